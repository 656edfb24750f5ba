"""Web plumbing shared by the visitor pages and the reception console: templates, language, cookies, CSRF."""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from kiosk.i18n import LANGUAGES, Formatter, translations

TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
LANG_COOKIE = "sw_lang"
CSRF_COOKIE = "sw_csrf"
STAFF_COOKIE = "sw_staff"
CSRF_FIELD = "csrf"
VISITOR_FIELDS = {"name", "company", "host_id", "purpose", "email", "phone", CSRF_FIELD}

SECURITY_HEADERS = {
    # Every asset is served from the box: nothing else may load, frame the page or receive a form.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
                               "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
}


def make_environments() -> dict[str, Environment]:
    """One Jinja2 environment per language, with the gettext catalog installed (autoescape on for all)."""
    envs = {}
    for lang in LANGUAGES:
        # select_autoescape only escapes templates named .html/.htm/.xml; every template here is .html,
        # and default_for_string=True covers templates made from strings.
        env = Environment(loader=FileSystemLoader(TEMPLATE_DIR), extensions=["jinja2.ext.i18n"],
                          autoescape=select_autoescape(["html", "htm", "xml"], default_for_string=True),
                          trim_blocks=True, lstrip_blocks=True)
        env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]
        envs[lang] = env
    return envs


class Pages:
    """Renders pages in the request's language, and keeps the language and CSRF cookies."""

    def __init__(self, tz: ZoneInfo, default_language: str, secure_cookies: bool, site_name: str,
                 idle_return_s: float = 60.0) -> None:
        self.envs = make_environments()
        self.idle_return_s = idle_return_s
        self.tz = tz
        self.default_language = default_language
        self.secure = secure_cookies
        self.site_name = site_name

    def lang(self, request: Request) -> str:
        """The language of this request: `?lang=`, then the cookie, then the site default."""
        asked = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
        return asked if asked in LANGUAGES else self.default_language

    @property
    def fresh_start(self) -> str:
        """The welcome page in the site's default language: where one visitor's screens end, for the next."""
        return f"/lang/{self.default_language}?next=/"

    def gettext(self, lang: str, message: str, args: dict[str, object] | None = None) -> str:
        """One message in one language."""
        text = translations(lang).gettext(message)
        return text % args if args else text

    def csrf(self, request: Request) -> str:
        """This browser's CSRF token (double submit: the cookie and a hidden field must agree)."""
        token = request.cookies.get(CSRF_COOKIE)
        if not token or len(token) > 64:
            token = request.state.__dict__.setdefault("new_csrf", secrets.token_urlsafe(24))
        return token

    def csrf_ok(self, request: Request, submitted: object) -> bool:
        """Whether the form's token matches the cookie's."""
        cookie = request.cookies.get(CSRF_COOKIE)
        return bool(cookie) and isinstance(submitted, str) and hmac.compare_digest(cookie, submitted)

    def set_cookie(self, response: Response, name: str, value: str, max_age: int | None = None,
                   http_only: bool = True) -> None:
        """Secure (when configured), HttpOnly and SameSite=Strict, for the whole site."""
        response.set_cookie(name, value, max_age=max_age, path="/", secure=self.secure, httponly=http_only,
                            samesite="strict")

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        """A page in the request's language, with the cookies it needs."""
        lang = context.pop("lang", None) or self.lang(request)
        fmt = Formatter(lang, self.tz)
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        html = self.envs[lang].get_template(template).render(
            lang=lang, languages=LANGUAGES, fmt=fmt, csrf=self.csrf(request), site_name=self.site_name,
            idle_return_s=round(self.idle_return_s), fresh_start=self.fresh_start,
            here=quote(_strip_lang(path), safe="/?=&"), request=request, **context)
        response = HTMLResponse(html, status_code=status)
        if request.cookies.get(CSRF_COOKIE) != self.csrf(request):
            self.set_cookie(response, CSRF_COOKIE, self.csrf(request))
        if request.query_params.get("lang") in LANGUAGES and request.cookies.get(LANG_COOKIE) != lang:
            self.set_cookie(response, LANG_COOKIE, lang, max_age=3600 * 24 * 365)
        return response

    def redirect(self, url: str) -> RedirectResponse:
        """See-other to a local path."""
        return RedirectResponse(safe_next(url), status_code=303)


def _strip_lang(path: str) -> str:
    if "?" not in path:
        return path
    base, query = path.split("?", 1)
    kept = "&".join(p for p in query.split("&") if not p.startswith("lang="))
    return f"{base}?{kept}" if kept else base


def safe_next(url: str) -> str:
    """Only paths on this site (never `//host` or a scheme) may be redirected to."""
    if not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/"
    return url


def svg(markup: str) -> Markup:
    """Mark SVG made by our own code (QR codes) as safe to embed."""
    return Markup(markup)
