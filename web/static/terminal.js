/*
 * IronClaw — command output rendered as a terminal would show it.
 *
 * Output arrives in chunks (one `exec_output` event each) that may cut an
 * escape sequence or a line anywhere, so the decoder is a small state
 * machine fed chunk by chunk:
 *
 * - SGR sequences (ESC [ … m) set colours and styles: the 16 palette colours
 *   become classes (`ansi-fg-N`, `ansi-bg-N`, themed in style.css), 256-colour
 *   cube/grey and truecolor become a colour set through the CSSOM (the page's
 *   CSP forbids `style=` attributes, not `el.style`).
 * - `\r` moves back to the start of the line and later text overwrites it,
 *   so a progress bar leaves one line; `\b` moves back one column; erase-in-
 *   line and horizontal cursor moves are honoured. Other escape sequences
 *   (cursor up, clear screen, OSC titles, DCS…) are dropped whole.
 * - Other control characters are shown as `^X` (`M-^X` for C1) in a muted
 *   span, never passed through.
 *
 * Output is text: it only ever reaches the page through text nodes (and
 * toHTML escapes it).
 *
 * The decoder yields runs {text, cls, fg, bg, key}: finished lines once
 * (takeDone), and the line under the cursor, which may still change
 * (currentLine). view() keeps a <pre> in step with it.
 *
 * Browser: window.IronTerminal   Node: require('./terminal.js')
 */
(function (root) {
  'use strict';

  var GROUND = 0, ESC = 1, ESC_INTER = 2, CSI = 3, STRING = 4, STRING_ESC = 5;
  /** Longest CSI kept before it is dropped as garbage. */
  var MAX_CSI = 256;
  /** Longest OSC/DCS string swallowed before giving up on a terminator. */
  var MAX_STRING = 4096;
  /** Furthest column a cursor move may reach (bounds the padding it makes). */
  var MAX_COL = 1000;

  var PLAIN = {};

  /** '#rrggbb' for colour n (16-255) of the xterm 256-colour table; 0-15 stay palette indices. */
  function color256(n) {
    n = Number(n);
    if (!(n >= 0 && n <= 255) || n !== Math.floor(n)) return null;
    if (n < 16) return n;
    if (n >= 232) return hex(8 + 10 * (n - 232), 8 + 10 * (n - 232), 8 + 10 * (n - 232));
    n -= 16;
    var lv = [0, 95, 135, 175, 215, 255];
    return hex(lv[Math.floor(n / 36)], lv[Math.floor(n / 6) % 6], lv[n % 6]);
  }

  function rgb(parts) {
    if (parts.length < 3) return null;
    var v = parts.slice(0, 3).map(function (p) { return p === '' ? 0 : Number(p); });
    for (var i = 0; i < 3; i++) if (!(v[i] >= 0 && v[i] <= 255) || v[i] !== Math.floor(v[i])) return null;
    return hex(v[0], v[1], v[2]);
  }

  function hex(r, g, b) {
    return '#' + [r, g, b].map(function (x) { return (x < 16 ? '0' : '') + x.toString(16); }).join('');
  }

  /** The style after the SGR parameters `params` ("1;31", "38;5;196", "38:2::255:0:0"). */
  function applySgr(style, params) {
    var s = {};
    for (var k in style) s[k] = style[k];
    var groups = params === '' ? ['0'] : params.split(';');
    for (var i = 0; i < groups.length; i++) {
      var sub = groups[i].split(':');
      var n = sub[0] === '' ? 0 : Number(sub[0]);
      if (n === 38 || n === 48 || n === 58) {
        var c;
        if (sub.length > 1) {
          // ITU form, colon-separated: 38:5:n, 38:2:r:g:b or 38:2:cs:r:g:b.
          if (sub[1] === '5') c = color256(sub[2]);
          else if (sub[1] === '2') c = rgb(sub.length >= 6 ? sub.slice(3) : sub.slice(2));
          else c = null;
        } else if (groups[i + 1] === '5') {
          c = color256(groups[i + 2]);
          i += 2;
        } else if (groups[i + 1] === '2') {
          c = rgb(groups.slice(i + 2, i + 5));
          i += 4;
        } else {
          break; // malformed: the rest cannot be read reliably
        }
        if (c == null) continue;
        if (n === 38) s.fg = c;
        else if (n === 48) s.bg = c;
        continue;
      }
      if (n === 0) s = {};
      else if (n === 1) s.bold = true;
      else if (n === 2) s.dim = true;
      else if (n === 3) s.italic = true;
      else if (n === 4) s.underline = sub[1] !== '0';
      else if (n === 7) s.inverse = true;
      else if (n === 8) s.hidden = true;
      else if (n === 9) s.strike = true;
      else if (n === 21) s.underline = true;
      else if (n === 22) { s.bold = false; s.dim = false; }
      else if (n === 23) s.italic = false;
      else if (n === 24) s.underline = false;
      else if (n === 27) s.inverse = false;
      else if (n === 28) s.hidden = false;
      else if (n === 29) s.strike = false;
      else if (n >= 30 && n <= 37) s.fg = n - 30;
      else if (n === 39) delete s.fg;
      else if (n >= 40 && n <= 47) s.bg = n - 40;
      else if (n === 49) delete s.bg;
      else if (n >= 90 && n <= 97) s.fg = n - 90 + 8;
      else if (n >= 100 && n <= 107) s.bg = n - 100 + 8;
    }
    return s;
  }

  /** Classes and CSSOM colours of text in `style` on `stream`. */
  function runAttrs(style, stream) {
    var cls = [stream];
    var fg = style.fg, bg = style.bg;
    if (style.inverse) {
      var t = fg; fg = bg; bg = t;
      if (fg == null) cls.push('ansi-fg-inverse');
      if (bg == null) cls.push('ansi-bg-inverse');
    }
    var color = null, background = null;
    if (typeof fg === 'number') cls.push('ansi-fg-' + fg);
    else if (fg != null) { cls.push('ansi-fg-rgb'); color = fg; }
    if (typeof bg === 'number') cls.push('ansi-bg-' + bg);
    else if (bg != null) { cls.push('ansi-bg-rgb'); background = bg; }
    if (style.bold) cls.push('ansi-bold');
    if (style.dim) cls.push('ansi-dim');
    if (style.italic) cls.push('ansi-italic');
    if (style.underline) cls.push('ansi-underline');
    if (style.strike) cls.push('ansi-strike');
    if (style.hidden) cls.push('ansi-hidden');
    var c = cls.join(' ');
    return { cls: c, fg: color, bg: background, key: c + '|' + color + '|' + background };
  }

  /** `^X` for a C0 control or DEL, `M-^X` for a C1 control (as `cat -v` shows them). */
  function caret(code) {
    if (code === 0x7f) return '^?';
    if (code >= 0x80) return 'M-^' + String.fromCharCode(code - 0x80 + 64);
    return '^' + String.fromCharCode(code + 64);
  }

  function run(text, a) { return { text: text, cls: a.cls, fg: a.fg, bg: a.bg, key: a.key }; }

  function push(runs, text, a) {
    var last = runs[runs.length - 1];
    if (last && last.key === a.key) last.text += text;
    else runs.push(run(text, a));
  }

  /** Runs with [col, col + text.length) replaced by `text`. */
  function overwrite(runs, col, text, a) {
    var out = [], pos = 0, end = col + text.length, placed = false;
    runs.forEach(function (r) {
      var rs = pos, re = pos + r.text.length;
      pos = re;
      if (re <= col) { push(out, r.text, r); return; }
      if (rs < col) push(out, r.text.slice(0, col - rs), r);
      if (!placed) { push(out, text, a); placed = true; }
      if (re > end) push(out, r.text.slice(Math.max(0, end - rs)), r);
    });
    if (!placed) push(out, text, a);
    return out;
  }

  /** A terminal decoder: feed it chunks with write(), read runs back. */
  function Terminal() {
    this.state = GROUND;
    this.seq = '';
    this.strLen = 0;
    this.style = PLAIN;
    this.attrs = {};
    this.line = [];
    this.lineLen = 0;
    this.col = 0;
    this.done = [];
  }

  Terminal.prototype.attrsFor = function (stream) {
    var cache = this.attrs[stream];
    if (!cache) cache = this.attrs[stream] = runAttrs(this.style, stream);
    return cache;
  };

  Terminal.prototype.setStyle = function (style) {
    this.style = style;
    this.attrs = {};
  };

  /** Put printable text at the cursor. */
  Terminal.prototype.put = function (text, a) {
    if (this.col > this.lineLen) {
      push(this.line, new Array(this.col - this.lineLen + 1).join(' '), this.attrsFor('stdout'));
      this.lineLen = this.col;
    }
    if (this.col === this.lineLen) push(this.line, text, a);
    else this.line = overwrite(this.line, this.col, text, a);
    this.col += text.length;
    if (this.col > this.lineLen) this.lineLen = this.col;
  };

  Terminal.prototype.newline = function (a) {
    var line = this.line;
    if (line.length) push(line, '\n', line[line.length - 1]);
    else line.push(run('\n', a));
    for (var i = 0; i < line.length; i++) push(this.done, line[i].text, line[i]);
    this.line = [];
    this.lineLen = 0;
    this.col = 0;
  };

  /** Cut the line to [0, n). */
  Terminal.prototype.truncate = function (n) {
    if (n >= this.lineLen) return;
    var out = [], pos = 0;
    this.line.forEach(function (r) {
      if (pos < n) push(out, r.text.slice(0, n - pos), r);
      pos += r.text.length;
    });
    this.line = out;
    this.lineLen = n;
  };

  Terminal.prototype.csi = function (seq, stream) {
    var fin = seq.charAt(seq.length - 1);
    var params = seq.slice(0, -1);
    if (/[^0-9;:]/.test(params)) return; // private (`?25l`) or intermediates: not for us
    var n = params === '' ? 0 : parseInt(params, 10) || 0;
    if (fin === 'm') this.setStyle(applySgr(this.style, params));
    else if (fin === 'K') {
      if (n === 0) this.truncate(this.col);
      else if (n === 2) { this.line = []; this.lineLen = 0; }
      else if (n === 1) {
        // Through the cursor, inclusive.
        var col = this.col;
        this.col = 0;
        this.put(new Array(Math.min(col + 1, this.lineLen) + 1).join(' '), this.attrsFor(stream));
        this.col = col;
      }
    } else if (fin === 'G') this.col = Math.min(MAX_COL, Math.max(1, n) - 1);
    else if (fin === 'C') this.col = Math.min(MAX_COL, this.col + Math.max(1, n));
    else if (fin === 'D') this.col = Math.max(0, this.col - Math.max(1, n));
  };

  var CONTROL = /[\x00-\x1f\x7f-\x9f]/g;

  /** Feed a chunk of output from `stream` ('stdout' or 'stderr'). */
  Terminal.prototype.write = function (data, stream) {
    data = String(data);
    stream = stream === 'stderr' ? 'stderr' : 'stdout';
    var i = 0, len = data.length;
    while (i < len) {
      if (this.state === GROUND) {
        CONTROL.lastIndex = i;
        var m = CONTROL.exec(data);
        var stop = m ? m.index : len;
        if (stop > i) this.put(data.slice(i, stop), this.attrsFor(stream));
        if (!m) break;
        i = stop + 1;
        var code = data.charCodeAt(stop);
        if (code === 0x0a) this.newline(this.attrsFor(stream));
        else if (code === 0x0d) this.col = 0;
        else if (code === 0x08) this.col = Math.max(0, this.col - 1);
        else if (code === 0x09) this.put('\t', this.attrsFor(stream));
        else if (code === 0x1b) this.state = ESC;
        else this.put(caret(code), { cls: stream + ' term-ctl', fg: null, bg: null, key: stream + ' term-ctl' });
        continue;
      }
      var ch = data.charAt(i);
      var c = data.charCodeAt(i);
      i++;
      if (c === 0x18 || c === 0x1a) { this.state = GROUND; continue; } // CAN, SUB abort a sequence
      if (this.state === ESC) {
        if (ch === '[') { this.state = CSI; this.seq = ''; }
        else if (ch === ']' || ch === 'P' || ch === 'X' || ch === '^' || ch === '_') { this.state = STRING; this.strLen = 0; }
        else if (c >= 0x20 && c <= 0x2f) this.state = ESC_INTER;
        else if (c === 0x1b) this.state = ESC;
        else if (c >= 0x30 && c <= 0x7e) {
          if (ch === 'c') this.setStyle(PLAIN); // full reset
          this.state = GROUND;
        } else { this.state = GROUND; i--; } // a control: act on it
      } else if (this.state === ESC_INTER) {
        if (c >= 0x30 && c <= 0x7e) this.state = GROUND;
        else if (c < 0x20 || c > 0x7e) { this.state = GROUND; i--; }
      } else if (this.state === CSI) {
        if (c >= 0x40 && c <= 0x7e) {
          this.state = GROUND;
          this.csi(this.seq + ch, stream);
        } else if (c >= 0x20 && c <= 0x3f && this.seq.length < MAX_CSI) {
          this.seq += ch;
        } else {
          this.state = GROUND;
          if (c < 0x20) i--;
        }
      } else if (this.state === STRING) {
        if (c === 0x07) this.state = GROUND;
        else if (c === 0x1b) this.state = STRING_ESC;
        else if (++this.strLen > MAX_STRING) this.state = GROUND;
      } else if (this.state === STRING_ESC) {
        // ESC \ ends the string; ESC anything else ends it and starts anew.
        this.state = GROUND;
        if (ch !== '\\') { this.state = ESC; i--; }
      }
    }
  };

  /** Runs of the lines finished since the last call. */
  Terminal.prototype.takeDone = function () {
    var d = this.done;
    this.done = [];
    return d;
  };

  /** Runs of the line under the cursor (may still be rewritten). */
  Terminal.prototype.currentLine = function () { return this.line; };

  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }

  /** Runs as an HTML string (for tests and checks; the page builds DOM). */
  function toHTML(runs) {
    return runs.map(function (r) {
      var style = (r.fg ? 'color:' + r.fg + ';' : '') + (r.bg ? 'background-color:' + r.bg + ';' : '');
      return '<span class="' + esc(r.cls) + '"' + (style ? ' style="' + style + '"' : '') + '>' + esc(r.text) + '</span>';
    }).join('');
  }

  /** All of `chunks` ([data] or [[data, stream]]) fed to a fresh terminal, as HTML. */
  function renderHTML(chunks) {
    var t = new Terminal();
    chunks.forEach(function (c) {
      if (Array.isArray(c)) t.write(c[0], c[1]);
      else t.write(c, 'stdout');
    });
    return toHTML(t.takeDone().concat(t.currentLine()));
  }

  /** All of `chunks` as the plain text a terminal would show. */
  function renderText(chunks) {
    var t = new Terminal();
    chunks.forEach(function (c) { t.write(c, 'stdout'); });
    return t.takeDone().concat(t.currentLine()).map(function (r) { return r.text; }).join('');
  }

  function runElement(r, doc) {
    var el = doc.createElement('span');
    el.className = r.cls;
    if (r.fg) el.style.setProperty('--ansi-fg', r.fg);
    if (r.bg) el.style.setProperty('--ansi-bg', r.bg);
    el.appendChild(doc.createTextNode(r.text));
    return el;
  }

  /**
   * Keep `pre` showing everything written: finished lines are appended
   * once (a run continuing the previous one's style extends its text node),
   * the line under the cursor is redrawn on each write.
   */
  function view(pre, doc) {
    var term = new Terminal();
    var live = doc.createElement('span');
    live.className = 'term-line';
    pre.appendChild(live);
    var last = null, lastEl = null;
    return {
      write: function (data, stream) {
        term.write(data, stream);
        term.takeDone().forEach(function (r) {
          if (last && last.key === r.key) { lastEl.firstChild.appendData(r.text); return; }
          last = r;
          lastEl = runElement(r, doc);
          pre.insertBefore(lastEl, live);
        });
        live.replaceChildren.apply(live, term.currentLine().map(function (r) { return runElement(r, doc); }));
      }
    };
  }

  var api = {
    Terminal: Terminal, applySgr: applySgr, color256: color256, toHTML: toHTML,
    renderHTML: renderHTML, renderText: renderText, view: view
  };
  if (typeof module !== 'undefined' && module.exports) module.exports = api;
  else root.IronTerminal = api;
})(typeof window !== 'undefined' ? window : this);
