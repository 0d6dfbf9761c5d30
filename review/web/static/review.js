/* Keyboard shortcuts of the review pages: a key clicks the element whose
   data-key attribute names it (a accept, r reject, u uncertain, 1-9 relabel,
   n next item).  Keys typed into a text field are left alone; Esc leaves it.
   Plain JavaScript, no build step, no external resources. */
(function () {
  "use strict";
  var busy = false;
  function isTyping(target) {
    if (!target || !target.tagName) { return false; }
    return target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName);
  }
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) { return; }
    if (isTyping(event.target)) {
      if (event.key === "Escape") { event.target.blur(); }
      return;
    }
    if (event.repeat || busy) { return; }
    var key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (!/^[a-z0-9]$/.test(key)) { return; }
    var element = document.querySelector('[data-key="' + key + '"]');
    if (!element || element.matches(":disabled")) { return; }
    event.preventDefault();
    busy = true;  /* one decision per page: a held or doubled key must not post twice */
    element.click();
  });
  /* back/forward cache: a page restored from history accepts keys again */
  window.addEventListener("pageshow", function () { busy = false; });
}());
