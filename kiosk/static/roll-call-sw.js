// Service worker for /staff/: the roll call page goes to the network first and falls back to its last copy,
// so reception can still print who is in the building when the network or the kiosk is down.
// The copy belongs to one staff session: it is kept in a cache named after the session's marker (the
// X-Roll-Call-Key header of the page, the sw_roll cookie), served only while that cookie still names it,
// and dropped as soon as the kiosk answers without a key (signed out) or the marker is gone.
const PREFIX = "sitewarden-roll-call-";
const PAGE = "/staff/evacuation";
const KEEP = [PAGE, "/static/kiosk.css", "/static/print.js", "/static/roll-call.js"];
const MARKER = /^[0-9a-f]{32}$/;

async function sessionKey() {
  if (!self.cookieStore) return null;  // no way to tell whether the session lives: serve nothing
  const cookie = await self.cookieStore.get("sw_roll");
  return cookie && MARKER.test(cookie.value) ? cookie.value : null;
}

async function dropAllBut(keep) {
  for (const name of await caches.keys()) {
    if (name !== keep) await caches.delete(name);
  }
}

function signedOut() {
  return new Response("<!doctype html><title>Roll call</title><p>Signed out: log in to see the roll call.</p>",
                      { status: 503, headers: { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store" } });
}

self.addEventListener("install", () => { self.skipWaiting(); });
self.addEventListener("activate", event => {
  // Caches of the first version were not tied to a session.
  event.waitUntil(caches.delete("sitewarden-roll-call-v1").then(() => self.clients.claim()));
});
self.addEventListener("fetch", event => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || !KEEP.includes(url.pathname)) return;
  event.respondWith((async () => {
    let fresh = null;
    try {
      fresh = await fetch(event.request);
    } catch (err) {
      fresh = null;
    }
    if (fresh) {
      if (url.pathname === PAGE) {
        const key = fresh.ok && !fresh.redirected ? fresh.headers.get("X-Roll-Call-Key") : null;
        if (key && MARKER.test(key)) {
          await dropAllBut(PREFIX + key);
          await (await caches.open(PREFIX + key)).put(PAGE, fresh.clone());
        } else {
          await dropAllBut(null);  // signed out, expired or refused: nothing of the list stays
        }
      } else if (fresh.ok) {
        const key = await sessionKey();
        if (key && await caches.has(PREFIX + key)) await (await caches.open(PREFIX + key)).put(url.pathname, fresh.clone());
      }
      return fresh;
    }
    const key = await sessionKey();
    if (!key || !(await caches.has(PREFIX + key))) {
      await dropAllBut(null);
      return url.pathname === PAGE ? signedOut() : Response.error();
    }
    const kept = await (await caches.open(PREFIX + key)).match(url.pathname);
    if (!kept) return url.pathname === PAGE ? signedOut() : Response.error();
    if (url.pathname !== PAGE) return kept;
    const text = (await kept.text()).replace("<html ", '<html data-from-cache="yes" ');
    return new Response(text, { headers: { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store" } });
  })());
});
