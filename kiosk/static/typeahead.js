// Host type-ahead: a search box over the host <select> (which still works without JavaScript).
(function () {
  const select = document.getElementById("f-host_id");
  const search = document.getElementById("host-search");
  const list = document.getElementById("host-results");
  if (!select || !search || !list) return;
  const hosts = Array.from(select.options).filter(o => o.value)
    .map(o => ({ id: o.value, label: o.textContent, name: o.dataset.name || o.textContent }));
  const fold = s => s.normalize("NFKD").replace(/[\u0300-\u036f]/g, "").toLowerCase().replace(/[^a-z0-9]/g, "");
  search.hidden = false;
  select.hidden = true;  // the search box takes its place; the select still carries the value
  const label = document.querySelector('label[for="f-host_id"]');
  if (label) label.htmlFor = "host-search";
  function show(matches) {
    list.replaceChildren();
    for (const h of matches.slice(0, 8)) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button"; b.textContent = h.label; b.setAttribute("role", "option"); b.dataset.host = h.id;
      b.addEventListener("click", () => { select.value = h.id; search.value = h.label; list.hidden = true; });
      li.appendChild(b); list.appendChild(li);
    }
    list.hidden = matches.length === 0;
  }
  // A name typed in full picks its host as a tap would; the typed text stays either way.
  function exact(q) {
    const found = q ? hosts.filter(h => fold(h.name) === q || fold(h.label) === q) : [];
    return found.length === 1 ? found[0].id : "";
  }
  search.addEventListener("input", () => {
    const q = fold(search.value);
    select.value = exact(q);
    show(q ? hosts.filter(h => fold(h.label).includes(q)) : []);
  });
  if (select.value) { const cur = hosts.find(h => h.id === select.value); if (cur) search.value = cur.label; }
})();
