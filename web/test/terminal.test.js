// Checks for web/static/terminal.js. Run: node --test web/test/
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const term = require('../static/terminal.js');

const html = (...chunks) => term.renderHTML(chunks);
const text = (...chunks) => term.renderText(chunks);
const span = (cls, t, style) => `<span class="${cls}"${style ? ` style="${style}"` : ''}>${t}</span>`;

test('SGR: 16 colours become classes, reset ends them', () => {
  assert.strictEqual(html('\x1b[31mred\x1b[0m plain\n'),
    span('stdout ansi-fg-1', 'red') + span('stdout', ' plain\n'));
  assert.strictEqual(html('\x1b[1;92;44mB\x1b[mx'),
    span('stdout ansi-fg-10 ansi-bg-4 ansi-bold', 'B') + span('stdout', 'x'));
  assert.strictEqual(html('\x1b[97;101ma\x1b[39mb\x1b[49mc'),
    span('stdout ansi-fg-15 ansi-bg-9', 'a') + span('stdout ansi-bg-9', 'b') + span('stdout', 'c'));
});

test('SGR: styles set and cleared one by one', () => {
  assert.strictEqual(html('\x1b[1m\x1b[2m\x1b[3m\x1b[4m\x1b[9ma\x1b[22;23;24;29mb'),
    span('stdout ansi-bold ansi-dim ansi-italic ansi-underline ansi-strike', 'a') + span('stdout', 'b'));
  assert.strictEqual(html('\x1b[4:0mnone\x1b[4:3mcurly'),
    span('stdout', 'none') + span('stdout ansi-underline', 'curly'));
});

test('SGR: inverse swaps colours, default ones included', () => {
  assert.strictEqual(html('\x1b[7mi\x1b[31mr\x1b[27mn'),
    span('stdout ansi-fg-inverse ansi-bg-inverse', 'i') + span('stdout ansi-fg-inverse ansi-bg-1', 'r') + span('stdout ansi-fg-1', 'n'));
});

test('SGR: 256 colours and truecolor, both spellings', () => {
  assert.strictEqual(html('\x1b[38;5;9ma'), span('stdout ansi-fg-9', 'a'));
  assert.strictEqual(html('\x1b[38;5;196ma'), span('stdout ansi-fg-rgb', 'a', 'color:#ff0000;'));
  assert.strictEqual(html('\x1b[48;5;232ma'), span('stdout ansi-bg-rgb', 'a', 'background-color:#080808;'));
  assert.strictEqual(html('\x1b[38;5;67ma'), span('stdout ansi-fg-rgb', 'a', 'color:#5f87af;'));
  assert.strictEqual(html('\x1b[38;2;10;20;30;1ma'), span('stdout ansi-fg-rgb ansi-bold', 'a', 'color:#0a141e;'));
  assert.strictEqual(html('\x1b[38:2::255:128:0ma\x1b[48:2:1:2:3mb'),
    span('stdout ansi-fg-rgb', 'a', 'color:#ff8000;') + span('stdout ansi-fg-rgb ansi-bg-rgb', 'b', 'color:#ff8000;background-color:#010203;'));
  // Out of range values change nothing.
  assert.strictEqual(html('\x1b[38;5;300ma\x1b[38;2;999;0;0mb'), span('stdout', 'ab'));
});

test('an SGR split across chunks still applies', () => {
  assert.strictEqual(html('\x1b', '[3', '1mred', '\x1b[', '0m!'), span('stdout ansi-fg-1', 'red') + span('stdout', '!'));
});

test('\\r rewrites the line, within and across chunks', () => {
  assert.strictEqual(text('\rprogress 1\rprogress 2\rprogress 3\n'), 'progress 3\n');
  assert.strictEqual(text('\rprogress 1', '\rprogress 2', '\rprog', 'ress 3', '\n'), 'progress 3\n');
  assert.strictEqual(text('50%\r', '100%\n'), '100%\n');
  // Shorter text overwrites only what it covers, as on a terminal.
  assert.strictEqual(text('downloading\rdone\n'), 'doneloading\n');
  // Erase-in-line after \r is how progress bars avoid that.
  assert.strictEqual(text('downloading\r\x1b[Kdone\n'), 'done\n');
  assert.strictEqual(text('downloading\x1b[2K\rdone\n'), 'done\n');
  // Lines already finished are not touched.
  assert.strictEqual(text('one\ntwo\rTWO\n'), 'one\nTWO\n');
});

test('\\r\\n is a plain newline, also split across chunks', () => {
  assert.strictEqual(text('a\r\nb\r\n'), 'a\nb\n');
  assert.strictEqual(text('a\r', '\nb\r', '\n'), 'a\nb\n');
});

test('an overwrite keeps the styles of what it does not cover', () => {
  assert.strictEqual(html('\x1b[31mabc\x1b[0mdef\r\x1b[32mX\x1b[0m\x1b[1C\x1b[34mY'),
    span('stdout ansi-fg-2', 'X') + span('stdout ansi-fg-1', 'b') + span('stdout ansi-fg-4', 'Y') + span('stdout', 'def'));
});

test('backspace moves back one column', () => {
  assert.strictEqual(text('ab\bc\n'), 'ac\n');
  assert.strictEqual(text('\b\bx'), 'x');
  assert.strictEqual(text('abc', '\b\b', 'XY'), 'aXY');
});

test('cursor column moves', () => {
  assert.strictEqual(text('abcdef\x1b[3GX'), 'abXdef');
  assert.strictEqual(text('ab\x1b[3CX'), 'ab   X');
  assert.strictEqual(text('abcdef\x1b[2DX'), 'abcdXf');
  assert.strictEqual(text('abcdef\x1b[3G\x1b[1K'), '   def');
});

test('other control characters are shown, muted', () => {
  assert.strictEqual(html('a\x00b\x07c\x7fd\u0085e'),
    span('stdout', 'a') + span('stdout term-ctl', '^@') + span('stdout', 'b') + span('stdout term-ctl', '^G') +
    span('stdout', 'c') + span('stdout term-ctl', '^?') + span('stdout', 'd') + span('stdout term-ctl', 'M-^E') + span('stdout', 'e'));
  assert.strictEqual(text('tab\there'), 'tab\there');
});

test('non-SGR escape sequences are dropped whole', () => {
  assert.strictEqual(text('a\x1b[2J\x1b[H\x1b[?25l\x1b[1;5Hb\x1b[3Ac\n'), 'abc\n');
  assert.strictEqual(text('a\x1b]0;window title\x07b\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\c'), 'ablinkc');
  assert.strictEqual(text('a\x1b(Bb\x1b7c\x1b8d\x1b=e\x1bPq#0;1\x1b\\f'), 'abcdef');
  // Split anywhere.
  assert.strictEqual(text('a\x1b]0;ti', 'tle\x1b', '\\b\x1b', '[?2', '5hc'), 'abc');
  // A private SGR-looking sequence is not SGR.
  assert.strictEqual(html('\x1b[>4;1mx'), span('stdout', 'x'));
  // CAN aborts a sequence; what follows is text.
  assert.strictEqual(text('\x1b[31\x18x'), 'x');
});

test('an unterminated OSC gives up instead of eating all output', () => {
  const out = text('\x1b]0;' + 'x'.repeat(5000) + '\nvisible\n');
  assert.ok(out.endsWith('visible\n'), JSON.stringify(out.slice(-40)));
});

test('HTML in output stays text', () => {
  const out = html('<img src=x onerror=alert(1)> & "q" \x1b[31m<script>alert(1)</script>');
  assert.strictEqual(out,
    span('stdout', '&lt;img src=x onerror=alert(1)&gt; &amp; &quot;q&quot; ') +
    span('stdout ansi-fg-1', '&lt;script&gt;alert(1)&lt;/script&gt;'));
  assert.ok(!/<(img|script)/.test(out));
});

test('stdout and stderr keep their own class on one line', () => {
  assert.strictEqual(html(['out ', 'stdout'], ['err\n', 'stderr'], ['\x1b[33mwarn', 'stderr']),
    span('stdout', 'out ') + span('stderr', 'err\n') + span('stderr ansi-fg-3', 'warn'));
});

test('finished lines are handed over once, the current line stays open', () => {
  const t = new term.Terminal();
  t.write('one\ntw', 'stdout');
  assert.deepStrictEqual(t.takeDone().map((r) => r.text), ['one\n']);
  assert.deepStrictEqual(t.currentLine().map((r) => r.text), ['tw']);
  t.write('o\rTWO', 'stdout');
  assert.deepStrictEqual(t.takeDone(), []);
  assert.deepStrictEqual(t.currentLine().map((r) => r.text), ['TWO']);
});
