// Logging out leaves nothing of the roll call in this browser: its cache, the service worker and the session
// marker go before the logout is sent (the server's Clear-Site-Data does the same for browsers without script).
(function () {
  const form = document.getElementById("logout-form");
  if (!form) return;
  let sent = false;
  form.addEventListener("submit", event => {
    if (sent) return;
    event.preventDefault();
    sent = true;
    document.cookie = "sw_roll=; Max-Age=0; Path=/";
    const work = [];
    if (window.caches) work.push(caches.keys().then(keys => Promise.all(keys.map(k => caches.delete(k)))));
    if (navigator.serviceWorker) {
      work.push(navigator.serviceWorker.getRegistrations().then(regs => Promise.all(regs.map(r => r.unregister()))));
    }
    Promise.allSettled(work).then(() => form.submit());
  });
})();
