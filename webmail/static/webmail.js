// Letterhead webmail: keyboard shortcuts. Every page works without this file; it only presses
// for the user what the page already offers. An element with data-key="r" is clicked (or, for a
// field, focused) when r is typed outside a text field; j and k move through a message list,
// Enter or o opens the message, x ticks it; ? shows the list of shortcuts.
(function () {
  "use strict";

  function typing(target) {
    var name = target && target.tagName;
    return name === "INPUT" || name === "TEXTAREA" || name === "SELECT" || (target && target.isContentEditable);
  }

  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("table.messages tbody tr"));
  }

  function move(step) {
    var all = rows();
    if (!all.length) {
      return;
    }
    var current = all.findIndex(function (row) { return row.classList.contains("focused"); });
    var next = current < 0 ? 0 : Math.min(all.length - 1, Math.max(0, current + step));
    if (current >= 0) {
      all[current].classList.remove("focused");
      all[current].removeAttribute("aria-current");
    }
    all[next].classList.add("focused");
    all[next].setAttribute("aria-current", "true");
    all[next].scrollIntoView({ block: "nearest" });
  }

  function focusedRow() {
    return document.querySelector("table.messages tbody tr.focused");
  }

  function press(key) {
    var target = document.querySelector('[data-key="' + key + '"]');
    if (!target) {
      return false;
    }
    if (typing(target)) {
      target.focus();
    } else {
      target.click();
    }
    return true;
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) {
      return;
    }
    var key = event.key;
    var row = focusedRow();
    var handled = true;
    if (key === "j") {
      move(1);
    } else if (key === "k") {
      move(-1);
    } else if ((key === "Enter" || key === "o") && row) {
      row.querySelector("a").click();
    } else if (key === "x" && row) {
      row.querySelector('input[type="checkbox"]').click();
    } else if (key === "?") {
      var help = document.getElementById("shortcuts");
      if (help) {
        help.open = !help.open;
      }
    } else {
      handled = press(key === "Delete" ? "#" : key);
    }
    if (handled) {
      event.preventDefault();
    }
  });
})();
