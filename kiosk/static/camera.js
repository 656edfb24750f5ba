// Optional badge photo from the browser's camera; the visitor may always skip.
(function () {
  const video = document.getElementById("camera");
  const canvas = document.getElementById("snapshot");
  const take = document.getElementById("photo-take");
  const use = document.getElementById("photo-use");
  const out = document.getElementById("photo-data");
  const status = document.getElementById("camera-status");
  const none = document.getElementById("camera-unavailable");
  if (!video || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) { if (status) status.hidden = true; if (none) none.hidden = false; return; }
  navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false }).then(stream => {
    video.srcObject = stream; video.hidden = false; status.hidden = true;
    video.addEventListener("playing", () => { take.disabled = false; }, { once: true });
  }).catch(() => { status.hidden = true; none.hidden = false; });
  take.addEventListener("click", () => {
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    out.value = canvas.toDataURL("image/jpeg", 0.85);
    canvas.hidden = false; video.hidden = true; use.disabled = false;
    if (video.srcObject) video.srcObject.getTracks().forEach(t => t.stop());
  });
})();
