// Print buttons (no inline handlers: the page's CSP allows scripts from this site only).
document.querySelectorAll("[data-print]").forEach(b => b.addEventListener("click", () => window.print()));
