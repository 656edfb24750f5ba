// The roll call keeps working when the kiosk cannot be reached: a service worker keeps the last copy.
(function () {
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/staff/sw.js", { scope: "/staff/" }).catch(() => {});
  }
  const note = document.getElementById("offline-note");
  if (note && document.documentElement.dataset.fromCache === "yes") note.hidden = false;
  window.addEventListener("offline", () => { if (note) note.hidden = false; });
})();
