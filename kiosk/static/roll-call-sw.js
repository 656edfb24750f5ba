// Service worker for /staff/: the roll call page goes to the network first and falls back to its last copy,
// so reception can still print who is in the building when the network or the kiosk is down.
const CACHE = "sitewarden-roll-call-v1";
const KEEP = ["/staff/evacuation", "/static/kiosk.css", "/static/print.js", "/static/roll-call.js"];
self.addEventListener("install", event => { self.skipWaiting(); });
self.addEventListener("activate", event => { event.waitUntil(self.clients.claim()); });
self.addEventListener("fetch", event => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || !KEEP.includes(url.pathname)) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const fresh = await fetch(event.request);
      if (fresh.ok && !fresh.redirected) await cache.put(url.pathname, fresh.clone());
      return fresh;
    } catch (err) {
      const kept = await cache.match(url.pathname);
      if (kept) {
        if (url.pathname !== "/staff/evacuation") return kept;
        const text = (await kept.text()).replace("<html ", '<html data-from-cache="yes" ');
        return new Response(text, { headers: { "Content-Type": "text/html; charset=utf-8" } });
      }
      throw err;
    }
  })());
});
