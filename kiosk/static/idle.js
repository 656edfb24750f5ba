// Visitor screens go back to the welcome page when left alone, and never come back with Back: nothing of one
// visitor is shown to the next. The badge page ends its check-in on the server (its Done form) when it times out.
(function () {
  const seconds = Number(document.body.dataset.idleReturnS);
  if (!seconds) return;
  const done = document.querySelector("form[data-idle-submit]");
  let timer = 0;
  function leave() {
    if (done) done.submit();
    else location.replace(document.body.dataset.idleHome || "/");
  }
  function arm() { clearTimeout(timer); timer = setTimeout(leave, seconds * 1000); }
  ["pointerdown", "keydown", "input"].forEach(t => document.addEventListener(t, arm, { capture: true, passive: true }));
  arm();
  // Chromium may keep even a no-store page in its back-forward cache: blank it on the way out, and send a page
  // that comes back from that cache to the welcome page.
  window.addEventListener("pagehide", event => { if (event.persisted) document.querySelector("main").replaceChildren(); });
  window.addEventListener("pageshow", event => { if (event.persisted) location.replace(document.body.dataset.idleHome || "/"); });
})();
