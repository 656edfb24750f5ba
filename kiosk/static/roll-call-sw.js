// Service worker for /staff/: the roll call page goes to the network first and falls back to its last copy,
// so reception can still print who is in the building when the network or the kiosk is down.
// The copy belongs to one staff session: it is kept in a cache named after the session's marker (the
// X-Roll-Call-Key header of the page, the sw_roll cookie), served only while that cookie still names it and
// the session has not ended (X-Roll-Call-Expires, kept with the copy), and dropped as soon as the kiosk says the
// session is over: a redirect (to the login page), a 401 or 403, or a page without a key.
// A 5xx is not the kiosk saying that: a TLS proxy in front of a stopped kiosk answers 502, a failing database
// 500, which is exactly when the roll call is needed. Those are treated like no answer at all.
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

function sessionOver(response) {
  // Navigations fetch with redirect "manual" (an opaque redirect), the page's own fetches follow redirects.
  return response.type === "opaqueredirect" || response.redirected || response.status === 401 ||
    response.status === 403 || (response.ok && !MARKER.test(response.headers.get("X-Roll-Call-Key") || ""));
}

async function keptCache() {
  // The copy of the session the marker names, while that session lasts; else nothing is kept at all.
  const key = await sessionKey();
  if (key && await caches.has(PREFIX + key)) {
    const cache = await caches.open(PREFIX + key);
    const page = await cache.match(PAGE);
    const expires = page ? Number(page.headers.get("X-Roll-Call-Expires")) : 0;
    if (expires > Date.now()) return cache;
  }
  await dropAllBut(null);
  return null;
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
    if (fresh && url.pathname === PAGE) {
      if (sessionOver(fresh)) {
        await dropAllBut(null);  // signed out, expired or refused: nothing of the list stays
        return fresh;
      }
      if (fresh.ok) {
        const key = fresh.headers.get("X-Roll-Call-Key");
        await dropAllBut(PREFIX + key);
        await (await caches.open(PREFIX + key)).put(PAGE, fresh.clone());
        return fresh;
      }
      if (fresh.status < 500) return fresh;  // some other refusal (404, 429): the copy stays, unused
    } else if (fresh) {
      if (fresh.ok) {
        const key = await sessionKey();
        if (key && await caches.has(PREFIX + key)) await (await caches.open(PREFIX + key)).put(url.pathname, fresh.clone());
      }
      if (fresh.status < 500) return fresh;
    }
    // No answer, or a server error: the kept copy while its session lasts.
    const cache = await keptCache();
    const kept = cache ? await cache.match(url.pathname) : null;
    if (!kept) {
      if (fresh) return fresh;
      return url.pathname === PAGE ? signedOut() : Response.error();
    }
    if (url.pathname !== PAGE) return kept;
    const text = (await kept.text()).replace("<html ", '<html data-from-cache="yes" ');
    return new Response(text, { headers: { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store" } });
  })());
});
