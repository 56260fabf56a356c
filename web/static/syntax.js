/*
 * IronClaw — syntax highlighting of code blocks (Markdown replies and the
 * code of tool cards), on top of the vendored Prism (static/vendor/prism).
 *
 * Only Prism.tokenize is used: its token tree becomes <span class="token
 * TYPE"> elements and text nodes built with createElement/createTextNode,
 * so the code, which comes from the model, is never parsed as HTML.
 * Unknown languages and very long blocks stay plain text.
 *
 * Browser: window.IronSyntax   Node: require('./syntax.js') (pass Prism in)
 */
(function (root) {
  'use strict';

  /** Longest code highlighted: tokenising is regex work on the main thread. */
  var MAX_CODE = 50000;
  /** Names people give languages that Prism knows under another one. */
  var ALIAS = { console: 'bash', zsh: 'bash', shell: 'bash', python3: 'python', golang: 'go', rs: 'rust', 'c++': 'cpp' };
  var NAME = /^[\w-]{1,40}$/;

  /** The Prism grammar for `lang`, or null. */
  function grammar(prism, lang) {
    if (!prism || !lang) return null;
    lang = String(lang).toLowerCase();
    lang = ALIAS[lang] || lang;
    var langs = prism.languages;
    return Object.prototype.hasOwnProperty.call(langs, lang) && typeof langs[lang] === 'object' ? langs[lang] : null;
  }

  /** Prism tokens -> nodes: a string, or {cls, c: [nodes]}. */
  function toNodes(tokens) {
    return tokens.map(function (t) {
      if (typeof t === 'string') return t;
      var cls = ['token'];
      if (NAME.test(t.type)) cls.push(t.type);
      [].concat(t.alias || []).forEach(function (a) { if (NAME.test(a)) cls.push(a); });
      var content = t.content;
      return { cls: cls.join(' '), c: Array.isArray(content) ? toNodes(content) : typeof content === 'string' ? [content] : toNodes([content]) };
    });
  }

  /** `code` in `lang` as nodes, or null when it is not highlighted. */
  function tokens(prism, code, lang) {
    var g = grammar(prism, lang);
    if (!g || code.length > MAX_CODE) return null;
    return toNodes(prism.tokenize(code, g));
  }

  function build(nodes, parent, doc) {
    nodes.forEach(function (n) {
      if (typeof n === 'string') { parent.appendChild(doc.createTextNode(n)); return; }
      var span = doc.createElement('span');
      span.className = n.cls;
      build(n.c, span, doc);
      parent.appendChild(span);
    });
  }

  /** Highlight the <code> element `code` as `lang` (its text stays the same). */
  function highlight(code, lang) {
    try {
      var nodes = tokens(root.Prism, code.textContent, lang);
      if (!nodes) return;
      var doc = code.ownerDocument;
      var frag = doc.createDocumentFragment();
      build(nodes, frag, doc);
      code.replaceChildren(frag);
      code.classList.add('highlighted');
    } catch (e) { /* leave it plain */ }
  }

  /** Highlight every `pre > code.language-X` inside `el`. */
  function highlightWithin(el) {
    el.querySelectorAll('pre > code[class*="language-"]').forEach(function (code) {
      var m = /(?:^|\s)language-([\w+#.\-]+)/.exec(code.className);
      if (m) highlight(code, m[1]);
    });
  }

  var api = { tokens: tokens, toNodes: toNodes, highlight: highlight, highlightWithin: highlightWithin, MAX_CODE: MAX_CODE };
  if (typeof module !== 'undefined' && module.exports) module.exports = api;
  else root.IronSyntax = api;
})(typeof window !== 'undefined' ? window : this);
