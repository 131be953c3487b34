// Progressive enhancement: a copy button for the patient link. Without scripts the read-only field stays
// selectable, and the button stays hidden.
(function () {
  var button = document.getElementById("copy-link");
  if (!button || !navigator.clipboard) { return; }
  var field = document.getElementById(button.getAttribute("data-copy"));
  button.hidden = false;
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(field.value).then(function () {
      button.textContent = button.getAttribute("data-done");
    }, function () { field.select(); });
  });
  field.addEventListener("focus", function () { field.select(); });
})();
