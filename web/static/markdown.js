/*
 * IronClaw — a small, safe Markdown renderer.
 *
 * Model output is untrusted. This renderer never hands it to an HTML parser:
 * Markdown is parsed into a plain node tree ({t: tag, a: attrs, c: children}
 * or a string for text), and the tree is turned into DOM nodes with
 * createElement / createTextNode / setAttribute, keeping only the tags and
 * attributes on a fixed allow-list. Links are kept only for http, https and
 * mailto URLs. Raw HTML in the source is shown as text.
 *
 * Browser: window.IronMarkdown.render(text) -> DocumentFragment
 * Node:    require('./markdown.js') -> { parse, toHTML, toDOM, render, safeUrl }
 */
(function (root) {
  'use strict';

  // ------------------------------------------------------------ allow-lists

  var TAGS = {
    p: 1, h1: 1, h2: 1, h3: 1, h4: 1, h5: 1, h6: 1, em: 1, strong: 1, del: 1,
    code: 1, pre: 1, ul: 1, ol: 1, li: 1, blockquote: 1, a: 1, hr: 1, br: 1,
    table: 1, thead: 1, tbody: 1, tr: 1, th: 1, td: 1, div: 1, span: 1, button: 1
  };
  var VOID = { hr: 1, br: 1 };
  var ATTRS = {
    'class': 1, href: 1, target: 1, rel: 1, start: 1, type: 1, title: 1,
    'aria-label': 1, 'data-lang': 1
  };
  var SCHEMES = { 'http:': 1, 'https:': 1, 'mailto:': 1 };

  /** The URL if it is an absolute http/https/mailto URL, else null. */
  function safeUrl(url) {
    if (typeof url !== 'string') return null;
    // Browsers ignore ASCII whitespace and control characters inside a
    // scheme ("java\tscript:"), so judge the URL with them removed.
    var u = url.replace(/[\u0000-\u0020\u007f-\u009f\u00ad\u200b-\u200f\u2028\u2029\ufeff]/g, '');
    var m = /^([a-zA-Z][a-zA-Z0-9+.\-]*):/.exec(u);
    if (!m) return null;
    if (!SCHEMES[m[1].toLowerCase() + ':']) return null;
    if (/^https?:/i.test(u) && !/^https?:\/\/[^\/?#\s]/i.test(u)) return null;
    if (/^mailto:$/i.test(u)) return null;
    return u;
  }

  function el(tag, attrs, children) {
    return { t: tag, a: attrs || null, c: children || [] };
  }

  // ------------------------------------------------------------ block level

  var RE_FENCE = /^( {0,3})(`{3,}|~{3,})[ \t]*([^\s`]*)[^`]*$/;
  var RE_HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
  var RE_HR = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
  var RE_QUOTE = /^ {0,3}> ?/;
  var RE_ITEM = /^( *)([-*+]|\d{1,9}[.)])([ \t]+|$)/;
  var RE_SETEXT1 = /^ {0,3}=+[ \t]*$/;
  var RE_TABLE_DELIM = /^ *\|? *:?-+:? *(\| *:?-+:? *)*\|? *$/;

  function isBlank(line) { return /^[ \t]*$/.test(line); }

  function indentOf(line) {
    var n = 0;
    while (n < line.length && line[n] === ' ') n++;
    return n;
  }

  function expandTabs(line) {
    // Leading tabs count as four spaces; tabs elsewhere are left alone.
    var m = /^[ \t]+/.exec(line);
    if (!m || m[0].indexOf('\t') < 0) return line;
    var col = 0, out = '';
    for (var i = 0; i < m[0].length; i++) {
      if (m[0][i] === '\t') { var w = 4 - (col % 4); out += '    '.slice(0, w); col += w; }
      else { out += ' '; col++; }
    }
    return out + line.slice(m[0].length);
  }

  function isTableStart(lines, i) {
    return i + 1 < lines.length && lines[i].indexOf('|') >= 0 &&
      RE_TABLE_DELIM.test(lines[i + 1]) && lines[i + 1].indexOf('-') >= 0 &&
      splitRow(lines[i]).length === splitRow(lines[i + 1]).length;
  }

  /** Whether a line starts a block that ends a paragraph. */
  function interrupts(lines, i) {
    var line = lines[i];
    return RE_FENCE.test(line) || RE_HEADING.test(line) || RE_HR.test(line) ||
      RE_QUOTE.test(line) || (RE_ITEM.test(line) && !isBlank(line.replace(RE_ITEM, ''))) ||
      isTableStart(lines, i);
  }

  function parseBlocks(lines) {
    var out = [];
    var i = 0;
    while (i < lines.length) {
      var line = lines[i];
      if (isBlank(line)) { i++; continue; }
      var m;

      if ((m = RE_FENCE.exec(line))) {
        var fenceIndent = m[1].length, fence = m[2], lang = m[3] || '';
        var body = [];
        i++;
        while (i < lines.length) {
          var l = lines[i];
          var close = /^ {0,3}(`{3,}|~{3,})[ \t]*$/.exec(l);
          if (close && close[1][0] === fence[0] && close[1].length >= fence.length) { i++; break; }
          var strip = Math.min(fenceIndent, indentOf(l));
          body.push(l.slice(strip));
          i++;
        }
        out.push(codeBlock(body.join('\n'), lang));
        continue;
      }

      if ((m = RE_HEADING.exec(line))) {
        out.push(el('h' + m[1].length, null, parseInline(m[2] || '')));
        i++;
        continue;
      }

      if (RE_HR.test(line)) { out.push(el('hr')); i++; continue; }

      if (RE_QUOTE.test(line)) {
        var q = [];
        while (i < lines.length) {
          var ql = lines[i];
          if (RE_QUOTE.test(ql)) { q.push(ql.replace(RE_QUOTE, '')); i++; continue; }
          if (isBlank(ql) || interrupts(lines, i)) break;
          q.push(ql); // lazy continuation
          i++;
        }
        out.push(el('blockquote', null, parseBlocks(q)));
        continue;
      }

      if (RE_ITEM.test(line)) {
        var r = parseList(lines, i);
        out.push(r.node);
        i = r.next;
        continue;
      }

      if (isTableStart(lines, i)) {
        var t = parseTable(lines, i);
        out.push(t.node);
        i = t.next;
        continue;
      }

      // Paragraph.
      var para = [line];
      i++;
      while (i < lines.length && !isBlank(lines[i]) && !interrupts(lines, i)) {
        if (RE_SETEXT1.test(lines[i])) break;
        para.push(lines[i]);
        i++;
      }
      if (i < lines.length && RE_SETEXT1.test(lines[i])) {
        out.push(el('h1', null, parseInline(para.join('\n').trim())));
        i++;
        continue;
      }
      out.push(el('p', null, parseInline(para.map(function (s) { return s.replace(/^[ \t]+/, ''); }).join('\n').replace(/\s+$/, ''))));
    }
    return out;
  }

  function codeBlock(code, lang) {
    lang = String(lang || '').replace(/[^\w+#.\-]/g, '').slice(0, 32).toLowerCase();
    var codeAttrs = lang ? { 'class': 'language-' + lang } : null;
    return el('div', { 'class': 'code-block' }, [
      el('div', { 'class': 'code-head' }, [
        el('span', { 'class': 'code-lang' }, [lang || 'text']),
        el('button', { type: 'button', 'class': 'copy-btn', 'aria-label': 'Copy code', title: 'Copy code' }, ['Copy'])
      ]),
      el('pre', null, [el('code', codeAttrs, [code])])
    ]);
  }

  function parseList(lines, i) {
    var first = RE_ITEM.exec(lines[i]);
    var ordered = /\d/.test(first[2]);
    var kind = ordered ? first[2].slice(-1) : first[2];
    var baseIndent = first[1].length;
    var start = ordered ? parseInt(first[2], 10) : 1;
    var items = [];
    var loose = false;
    var blankBetween = false;

    while (i < lines.length) {
      var m = RE_ITEM.exec(lines[i]);
      if (!m) break;
      var mOrdered = /\d/.test(m[2]);
      var mKind = mOrdered ? m[2].slice(-1) : m[2];
      if (mOrdered !== ordered || mKind !== kind || m[1].length > baseIndent + 3) break;
      if (blankBetween) loose = true;
      var markerEnd = m[1].length + m[2].length;
      var spaces = m[3].length;
      var contentIndent = (spaces >= 1 && spaces <= 4) ? markerEnd + spaces : markerEnd + 1;
      var itemLines = [lines[i].slice(Math.min(contentIndent, lines[i].length))];
      if (spaces > 4) itemLines[0] = lines[i].slice(markerEnd).replace(/^[ \t]+/, '');
      i++;
      var prevBlank = false;
      while (i < lines.length) {
        var l = lines[i];
        if (isBlank(l)) { itemLines.push(''); prevBlank = true; i++; continue; }
        var ind = indentOf(l);
        if (ind >= contentIndent) { itemLines.push(l.slice(contentIndent)); prevBlank = false; i++; continue; }
        // A less indented list marker nested deeper than this item's marker
        // still belongs to this item (models often indent by two).
        if (ind > m[1].length && RE_ITEM.test(l)) { itemLines.push(l.slice(ind)); prevBlank = false; i++; continue; }
        if (prevBlank) break;
        if (RE_ITEM.test(l) || interrupts(lines, i)) break;
        itemLines.push(l.replace(/^ +/, '')); // lazy continuation
        i++;
      }
      // Trailing blank lines belong between items, not inside this one.
      blankBetween = false;
      while (itemLines.length && isBlank(itemLines[itemLines.length - 1])) { itemLines.pop(); blankBetween = true; }
      for (var k = 1; k < itemLines.length - 1; k++) {
        if (isBlank(itemLines[k]) && !isBlank(itemLines[k + 1]) && !isBlank(itemLines[k - 1])) {
          if (!insideFence(itemLines, k)) loose = true;
        }
      }
      items.push(parseBlocks(itemLines));
    }

    var lis = items.map(function (blocks) {
      var children = [];
      blocks.forEach(function (b) {
        if (!loose && b && b.t === 'p') children.push.apply(children, b.c);
        else children.push(b);
      });
      return el('li', null, children);
    });
    var attrs = null;
    if (ordered && start !== 1) attrs = { start: String(start) };
    return { node: el(ordered ? 'ol' : 'ul', attrs, lis), next: i };
  }

  function insideFence(lines, k) {
    var open = false;
    for (var i = 0; i < k; i++) if (/^ {0,3}(`{3,}|~{3,})/.test(lines[i])) open = !open;
    return open;
  }

  function splitRow(line) {
    var s = line.trim();
    if (s[0] === '|') s = s.slice(1);
    if (s.length && s[s.length - 1] === '|' && s[s.length - 2] !== '\\') s = s.slice(0, -1);
    var cells = [], cur = '', inCode = false;
    for (var i = 0; i < s.length; i++) {
      var ch = s[i];
      if (ch === '\\' && s[i + 1] === '|') { cur += '|'; i++; continue; }
      if (ch === '`') inCode = !inCode;
      if (ch === '|' && !inCode) { cells.push(cur.trim()); cur = ''; continue; }
      cur += ch;
    }
    cells.push(cur.trim());
    return cells;
  }

  function parseTable(lines, i) {
    var head = splitRow(lines[i]);
    var aligns = splitRow(lines[i + 1]).map(function (d) {
      var l = d[0] === ':', r = d[d.length - 1] === ':';
      return l && r ? 'center' : r ? 'right' : l ? 'left' : '';
    });
    function cell(tag, text, idx) {
      var a = aligns[idx] ? { 'class': 'align-' + aligns[idx] } : null;
      return el(tag, a, parseInline(text || ''));
    }
    var thead = el('thead', null, [el('tr', null, head.map(function (h, k) { return cell('th', h, k); }))]);
    var rows = [];
    i += 2;
    while (i < lines.length && !isBlank(lines[i]) && lines[i].indexOf('|') >= 0) {
      var cells = splitRow(lines[i]);
      var tr = [];
      for (var k = 0; k < head.length; k++) tr.push(cell('td', cells[k], k));
      rows.push(el('tr', null, tr));
      i++;
    }
    var table = el('table', null, [thead, el('tbody', null, rows)]);
    return { node: el('div', { 'class': 'table-wrap' }, [table]), next: i };
  }

  // ------------------------------------------------------------ inline level

  var PUNCT = '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~';

  function isSpace(ch) { return ch === undefined || /\s/.test(ch); }
  function isAlnum(ch) { return ch !== undefined && /[A-Za-z0-9\u00c0-\uffff]/.test(ch); }

  function parseInline(s, noLinks) {
    var out = [];
    var buf = '';
    function flush() { if (buf) { out.push(buf); buf = ''; } }
    var i = 0, n = s.length;
    while (i < n) {
      var ch = s[i];

      if (ch === '\\') {
        if (s[i + 1] === '\n') { flush(); out.push(el('br')); i += 2; continue; }
        if (i + 1 < n && PUNCT.indexOf(s[i + 1]) >= 0) { buf += s[i + 1]; i += 2; continue; }
        buf += ch; i++; continue;
      }

      if (ch === '\n') {
        buf = buf.replace(/ +$/, '');
        flush();
        out.push(el('br'));
        i++;
        while (s[i] === ' ') i++;
        continue;
      }

      if (ch === '`') {
        var run = runLength(s, i, '`');
        var close = findCodeClose(s, i + run, run);
        if (close >= 0) {
          var code = s.slice(i + run, close).replace(/\n/g, ' ');
          if (code.length > 2 && code[0] === ' ' && code[code.length - 1] === ' ' && code.trim()) code = code.slice(1, -1);
          flush();
          out.push(el('code', null, [code]));
          i = close + run;
          continue;
        }
        buf += s.slice(i, i + run); i += run; continue;
      }

      if (ch === '*' || ch === '_' || (ch === '~' && s[i + 1] === '~')) {
        var em = tryEmphasis(s, i, noLinks);
        if (em) { flush(); out.push(em.node); i = em.next; continue; }
        var r = runLength(s, i, ch);
        buf += s.slice(i, i + r); i += r; continue;
      }

      if (!noLinks && ch === '!' && s[i + 1] === '[') {
        var img = tryLink(s, i + 1);
        if (img) {
          // Images are not loaded; they show as a link to the image.
          flush();
          var alt = img.text || img.url;
          var u = safeUrl(img.url);
          out.push(u ? el('a', { href: u, target: '_blank', rel: 'noopener noreferrer nofollow', title: img.title || u }, [alt])
            : el('span', null, [alt]));
          i = img.next;
          continue;
        }
      }

      if (!noLinks && ch === '[') {
        var link = tryLink(s, i);
        if (link) {
          flush();
          var href = safeUrl(link.url);
          var inner = parseInline(link.text, true);
          if (href) {
            var attrs = { href: href, target: '_blank', rel: 'noopener noreferrer nofollow' };
            if (link.title) attrs.title = link.title;
            out.push(el('a', attrs, inner.length ? inner : [href]));
          } else {
            out.push(el('span', { 'class': 'md-badlink', title: 'Link removed: only http, https and mailto links are allowed' }, inner));
          }
          i = link.next;
          continue;
        }
      }

      if (!noLinks && ch === '<') {
        var auto = /^<((?:https?|mailto):[^\s<>]+)>/i.exec(s.slice(i));
        if (auto && safeUrl(auto[1])) {
          flush();
          out.push(el('a', { href: safeUrl(auto[1]), target: '_blank', rel: 'noopener noreferrer nofollow' }, [auto[1]]));
          i += auto[0].length;
          continue;
        }
      }

      if (!noLinks && (ch === 'h' || ch === 'H') && !isAlnum(s[i - 1])) {
        var bare = /^https?:\/\/[^\s<>"'`]+/i.exec(s.slice(i));
        if (bare) {
          var url = trimUrl(bare[0]);
          if (safeUrl(url)) {
            flush();
            out.push(el('a', { href: safeUrl(url), target: '_blank', rel: 'noopener noreferrer nofollow' }, [url]));
            i += url.length;
            continue;
          }
        }
      }

      buf += ch;
      i++;
    }
    flush();
    return out;
  }

  function runLength(s, i, ch) {
    var n = 0;
    while (s[i + n] === ch) n++;
    return n;
  }

  function findCodeClose(s, from, run) {
    var i = from;
    while (i < s.length) {
      if (s[i] === '`') {
        var r = runLength(s, i, '`');
        if (r === run) return i;
        i += r;
      } else i++;
    }
    return -1;
  }

  function trimUrl(url) {
    // Drop trailing punctuation, and a closing paren that has no opener.
    for (;;) {
      var last = url[url.length - 1];
      if (/[.,;:!?*_~'"]/.test(last)) { url = url.slice(0, -1); continue; }
      if (last === ')') {
        var open = (url.match(/\(/g) || []).length, closeN = (url.match(/\)/g) || []).length;
        if (closeN > open) { url = url.slice(0, -1); continue; }
      }
      return url;
    }
  }

  function tryEmphasis(s, i, noLinks) {
    var ch = s[i];
    var run = runLength(s, i, ch);
    var len;
    if (ch === '~') { if (run !== 2) return null; len = 2; }
    else len = Math.min(run, 3);
    if (run > 3) return null;
    var after = s[i + len];
    if (isSpace(after)) return null;
    if (ch === '_' && isAlnum(s[i - 1])) return null;
    // Find the closing run of the same length, skipping code spans and
    // runs of other lengths (those are nested emphasis, parsed later).
    var j = i + len;
    while (j < s.length) {
      var c = s[j];
      if (c === '\\') { j += 2; continue; }
      if (c === '`') {
        var r = runLength(s, j, '`');
        var cl = findCodeClose(s, j + r, r);
        j = cl >= 0 ? cl + r : j + r;
        continue;
      }
      if (c === ch) {
        var r2 = runLength(s, j, ch);
        if (r2 === len && j > i + len && !isSpace(s[j - 1]) && !(ch === '_' && isAlnum(s[j + r2]))) {
          var inner = s.slice(i + len, j);
          var kids = parseInline(inner, noLinks);
          var node;
          if (ch === '~') node = el('del', null, kids);
          else if (len === 1) node = el('em', null, kids);
          else if (len === 2) node = el('strong', null, kids);
          else node = el('strong', null, [el('em', null, kids)]);
          return { node: node, next: j + len };
        }
        j += r2;
        continue;
      }
      j++;
    }
    return null;
  }

  /** [text](url "title") starting at s[i] === '['. */
  function tryLink(s, i) {
    var depth = 0, j = i;
    for (; j < s.length; j++) {
      var c = s[j];
      if (c === '\\') { j++; continue; }
      if (c === '`') {
        var r = runLength(s, j, '`');
        var cl = findCodeClose(s, j + r, r);
        if (cl >= 0) { j = cl + r - 1; continue; }
        j += r - 1;
        continue;
      }
      if (c === '[') depth++;
      else if (c === ']') { depth--; if (depth === 0) break; }
    }
    if (j >= s.length || s[j + 1] !== '(') return null;
    var text = s.slice(i + 1, j);
    var k = j + 2;
    while (s[k] === ' ') k++;
    var url = '';
    if (s[k] === '<') {
      var end = s.indexOf('>', k);
      if (end < 0) return null;
      url = s.slice(k + 1, end);
      k = end + 1;
    } else {
      var parens = 0;
      while (k < s.length && !/\s/.test(s[k])) {
        if (s[k] === '(') parens++;
        else if (s[k] === ')') { if (parens === 0) break; parens--; }
        url += s[k];
        k++;
      }
    }
    while (s[k] === ' ') k++;
    var title = '';
    if (s[k] === '"' || s[k] === "'") {
      var q = s[k];
      var tend = s.indexOf(q, k + 1);
      if (tend < 0) return null;
      title = s.slice(k + 1, tend);
      k = tend + 1;
      while (s[k] === ' ') k++;
    }
    if (s[k] !== ')') return null;
    return { text: text, url: url.replace(/\\([()\\])/g, '$1'), title: title, next: k + 1 };
  }

  // ------------------------------------------------------------ output

  /** Markdown text -> node tree (array of blocks). */
  function parse(src) {
    var text = String(src == null ? '' : src).replace(/\r\n?/g, '\n').replace(/\u0000/g, '\ufffd');
    return parseBlocks(text.split('\n').map(expandTabs));
  }

  function cleanAttrs(tag, attrs) {
    var out = [];
    if (!attrs) return out;
    Object.keys(attrs).forEach(function (k) {
      if (!ATTRS[k]) return;
      var v = String(attrs[k]);
      if (k === 'href') {
        if (tag !== 'a') return;
        v = safeUrl(v);
        if (!v) return;
      }
      if (k === 'start' && !/^\d{1,9}$/.test(v)) return;
      if (k === 'type' && v !== 'button') return;
      out.push([k, v]);
    });
    return out;
  }

  /** Node tree -> DocumentFragment, through the DOM API only. */
  function toDOM(nodes, doc) {
    doc = doc || root.document;
    var frag = doc.createDocumentFragment();
    (function add(parent, list) {
      list.forEach(function (n) {
        if (n == null) return;
        if (typeof n === 'string') { parent.appendChild(doc.createTextNode(n)); return; }
        if (!TAGS[n.t]) { add(parent, n.c || []); return; }
        var e = doc.createElement(n.t);
        cleanAttrs(n.t, n.a).forEach(function (kv) { e.setAttribute(kv[0], kv[1]); });
        if (!VOID[n.t]) add(e, n.c || []);
        parent.appendChild(e);
      });
    })(frag, nodes);
    return frag;
  }

  function esc(s) {
    return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;').replace(/'/g, '&#39;');
  }

  /** Node tree -> escaped HTML string (for tests and non-DOM use). */
  function toHTML(nodes) {
    var out = '';
    (function add(list) {
      list.forEach(function (n) {
        if (n == null) return;
        if (typeof n === 'string') { out += esc(n); return; }
        if (!TAGS[n.t]) { add(n.c || []); return; }
        out += '<' + n.t;
        cleanAttrs(n.t, n.a).forEach(function (kv) { out += ' ' + kv[0] + '="' + esc(kv[1]) + '"'; });
        out += '>';
        if (VOID[n.t]) return;
        add(n.c || []);
        out += '</' + n.t + '>';
      });
    })(nodes);
    return out;
  }

  /** Markdown text -> DocumentFragment. */
  function render(src, doc) { return toDOM(parse(src), doc); }

  var api = {
    parse: parse, parseInline: parseInline, toDOM: toDOM, toHTML: toHTML, render: render,
    safeUrl: safeUrl, TAGS: TAGS, ATTRS: ATTRS
  };
  if (typeof module !== 'undefined' && module.exports) module.exports = api;
  else root.IronMarkdown = api;
})(typeof window !== 'undefined' ? window : this);
