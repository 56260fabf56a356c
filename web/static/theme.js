/* Applies the saved colour theme before the page paints (no flash). */
(function () {
  'use strict';
  try {
    var t = localStorage.getItem('ironclaw.theme');
    if (t === 'light' || t === 'dark') document.documentElement.setAttribute('data-theme', t);
  } catch (e) { /* storage may be disabled */ }
})();
