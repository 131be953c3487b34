/* Progressive enhancement of the questionnaire form: enableWhen shown live, calculated items (live totals)
   from the server's engine. The form works without this script: the server decides both on submit. */
(function () {
  "use strict";
  var form = document.getElementById("questionnaire-form");
  if (!form) { return; }
  var summary = document.getElementById("error-summary");
  if (summary) { summary.focus(); }

  function answersOf(linkId) {
    var out = [];
    var inputs = form.querySelectorAll('[name="q-' + CSS.escape(linkId) + '"]');
    inputs.forEach(function (el) {
      if ((el.type === "radio" || el.type === "checkbox") && !el.checked) { return; }
      if (el.value.trim() === "") { return; }
      if (el.closest("[data-disabled-by-enable-when]")) { return; }
      out.push(el.value.trim());
    });
    return out;
  }

  function expected(cond) {
    for (var k in cond) {
      if (k.indexOf("answer") !== 0) { continue; }
      var v = cond[k];
      if (k === "answerCoding") { return { kind: "code", value: v.code }; }
      if (k === "answerBoolean") { return { kind: "bool", value: v ? "true" : "false" }; }
      if (k === "answerInteger" || k === "answerDecimal") { return { kind: "num", value: Number(v) }; }
      if (k === "answerQuantity") { return { kind: "num", value: Number(v.value) }; }
      return { kind: "text", value: String(v) };
    }
    return null;
  }

  function holds(cond) {
    var got = answersOf(cond.question);
    var exp = expected(cond);
    if (cond.operator === "exists") { return (got.length > 0) === (exp ? Boolean(exp.value === "true" || exp.value === true) : true); }
    if (!exp) { return false; }
    var vals = got.map(function (g) { return exp.kind === "num" ? Number(String(g).replace(",", ".")) : g; });
    var want = exp.value;
    switch (cond.operator) {
      case "=": return vals.some(function (g) { return g === want; });
      case "!=": return !vals.some(function (g) { return g === want; });
      case ">": return vals.some(function (g) { return g > want; });
      case "<": return vals.some(function (g) { return g < want; });
      case ">=": return vals.some(function (g) { return g >= want; });
      case "<=": return vals.some(function (g) { return g <= want; });
    }
    return false;
  }

  var conditional = Array.prototype.slice.call(form.querySelectorAll("[data-enable-when]"));
  function applyEnableWhen() {
    // repeat to a fixed point: hiding a question can hide those that depend on it
    for (var round = 0; round < conditional.length + 1; round++) {
      var changed = false;
      conditional.forEach(function (el) {
        var conds = JSON.parse(el.getAttribute("data-enable-when"));
        var results = conds.map(holds);
        var on = el.getAttribute("data-enable-behavior") === "any" ? results.some(Boolean) : results.every(Boolean);
        var wasOn = !el.hasAttribute("data-disabled-by-enable-when");
        if (on !== wasOn) {
          changed = true;
          if (on) { el.removeAttribute("data-disabled-by-enable-when"); el.hidden = false; }
          else { el.setAttribute("data-disabled-by-enable-when", ""); el.hidden = true; }
        }
      });
      if (!changed) { break; }
    }
  }

  var url = form.getAttribute("data-calculate");
  var outputs = form.querySelectorAll("[data-score]");
  var timer = null;
  function recalculate() {
    if (!url || !outputs.length || !window.fetch) { return; }
    clearTimeout(timer);
    timer = setTimeout(function () {
      fetch(url, { method: "POST", body: new URLSearchParams(new FormData(form)), credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (!data) { return; }
          outputs.forEach(function (o) {
            var v = data.scores[o.getAttribute("data-score")];
            if (v !== undefined && o.textContent !== v) { o.textContent = v; }
          });
        })
        .catch(function () { /* the total is shown again after submit */ });
    }, 150);
  }

  form.addEventListener("change", function () { applyEnableWhen(); recalculate(); });
  form.addEventListener("input", function (e) { if (e.target.type === "text") { applyEnableWhen(); recalculate(); } });
  applyEnableWhen();
  recalculate();
})();
