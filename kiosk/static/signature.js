// Drawn signature: pointer strokes on a canvas, sent as a PNG data URL.
(function () {
  const pad = document.getElementById("signature-pad");
  const out = document.getElementById("signature-data");
  const form = document.getElementById("rules-form");
  if (!pad || !out || !form) return;
  const ctx = pad.getContext("2d");
  ctx.lineWidth = 3; ctx.lineCap = "round"; ctx.strokeStyle = "#111";
  let drawing = false, strokes = 0;
  function at(e) { const r = pad.getBoundingClientRect(); return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height]; }
  pad.addEventListener("pointerdown", e => { drawing = true; strokes++; pad.setPointerCapture(e.pointerId); const [x, y] = at(e); ctx.beginPath(); ctx.moveTo(x, y); });
  pad.addEventListener("pointermove", e => { if (!drawing) return; const [x, y] = at(e); ctx.lineTo(x, y); ctx.stroke(); });
  ["pointerup", "pointercancel", "pointerleave"].forEach(t => pad.addEventListener(t, () => { drawing = false; }));
  document.getElementById("signature-clear").addEventListener("click", () => { ctx.clearRect(0, 0, pad.width, pad.height); strokes = 0; });
  form.addEventListener("submit", () => { out.value = strokes > 0 ? pad.toDataURL("image/png") : ""; });
})();
