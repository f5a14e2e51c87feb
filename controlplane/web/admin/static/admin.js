// Letterhead admin panel: the brand page's live preview. Every form works without this file;
// it only reloads the preview frame with the look being typed, before it is saved.
(function () {
  "use strict";
  var frame = document.getElementById("brand-preview");
  var form = document.getElementById("look-form");
  if (!frame || !form) {
    return;
  }
  var fields = ["name", "page_title", "accent_colour", "footer_text"];
  var timer = null;
  function refresh() {
    var query = fields.map(function (name) {
      var input = form.elements[name];
      return encodeURIComponent(name) + "=" + encodeURIComponent(input ? input.value : "");
    }).join("&");
    frame.src = frame.getAttribute("data-base") + "?" + query;
  }
  form.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  });
})();
