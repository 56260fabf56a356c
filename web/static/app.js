/*
 * IronClaw — the chat page.
 *
 * Plain JavaScript, no build step, no external resources. Everything the
 * model or the server sends is put into the page as text (textContent,
 * createTextNode) or through the safe Markdown renderer (markdown.js); no
 * server or model text ever reaches innerHTML.
 *
 * Wire protocol: DESIGN.md §2 (WebSocket) and §3 (REST); src/protocol.rs.
 */
(function () {
  'use strict';

  // ================================================================ helpers

  var SVG_NS = 'http://www.w3.org/2000/svg';
  var $ = function (sel) { return document.querySelector(sel); };

  /** h('div.a.b', {attr: v, text: 't', onclick: fn}, ...children) */
  function h(tag, attrs) {
    var parts = tag.split('.');
    var el = document.createElement(parts[0]);
    if (parts.length > 1) el.className = parts.slice(1).join(' ');
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v == null || v === false) return;
        if (k === 'class') el.className = (el.className ? el.className + ' ' : '') + v;
        else if (k === 'text') el.textContent = v;
        else if (k === 'hidden') el.hidden = !!v;
        else if (k.slice(0, 2) === 'on' && typeof v === 'function') el.addEventListener(k.slice(2), v);
        else if (v === true) el.setAttribute(k, '');
        else el.setAttribute(k, String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) appendKids(el, arguments[i]);
    return el;
  }
  function appendKids(el, kid) {
    if (kid == null || kid === false) return;
    if (Array.isArray(kid)) { kid.forEach(function (k) { appendKids(el, k); }); return; }
    el.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }

  var ICONS = {
    x: 'M6 6l12 12M18 6L6 18',
    trash: 'M3 6h18M8 6V4a1 1 0 0 1 1-1h6a1 1 0 0 1 1 1v2M19 6l-1 14a2 2 0 0 1-2 2H8a2 2 0 0 1-2-2L5 6M10 11v6M14 11v6',
    download: 'M12 4v11M7 10l5 5 5-5M4 20h16',
    folder: 'M3 7a2 2 0 0 1 2-2h4l2 2h8a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2z',
    file: 'M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8zM14 3v5h5',
    terminal: 'M4 17l6-6-6-6M12 19h8',
    code: 'M16 18l6-6-6-6M8 6l-6 6 6 6',
    shield: 'M12 22s8-4 8-10V5l-8-3-8 3v7c0 6 8 10 8 10zM12 8v4M12 16h.01',
    check: 'M20 6L9 17l-5-5',
    ban: 'M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM5.6 5.6l12.8 12.8',
    clock: 'M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM12 7v5l3 2',
    alert: 'M12 9v4M12 17h.01M10.3 3.9L1.8 18a2 2 0 0 0 1.7 3h17a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0z',
    stop: 'M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM9 9h6v6H9z',
    files: 'M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8zM14 3v5h5M9 15l2 2 4-4',
    home: 'M3 11l9-8 9 8M5 9v11h14V9',
    undo: 'M9 14L4 9l5-5M4 9h10.5a5.5 5.5 0 0 1 0 11H11'
  };
  function icon(name, cls) {
    var svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('class', 'icon' + (cls ? ' ' + cls : ''));
    svg.setAttribute('aria-hidden', 'true');
    var p = document.createElementNS(SVG_NS, 'path');
    p.setAttribute('d', ICONS[name] || ICONS.file);
    svg.appendChild(p);
    return svg;
  }

  function enc(s) { return encodeURIComponent(s); }
  function encPath(p) { return String(p).split('/').filter(function (s) { return s !== ''; }).map(encodeURIComponent).join('/'); }
  function sessionUrl(id) { return '/api/sessions/' + enc(id); }
  function fileUrl(id, path) { return sessionUrl(id) + '/files/' + encPath(path); }

  function parseTime(iso) { var t = Date.parse(iso); return isNaN(t) ? null : t; }

  function relTime(iso) {
    var t = parseTime(iso);
    if (t == null) return '';
    var s = (Date.now() - t) / 1000;
    if (s < 45) return 'just now';
    if (s < 3600) return Math.round(s / 60) + ' min ago';
    if (s < 86400) return Math.round(s / 3600) + ' h ago';
    if (s < 7 * 86400) { var d = Math.round(s / 86400); return d === 1 ? 'yesterday' : d + ' days ago'; }
    var date = new Date(t);
    var opts = { month: 'short', day: 'numeric' };
    if (date.getFullYear() !== new Date().getFullYear()) opts.year = 'numeric';
    return date.toLocaleDateString(undefined, opts);
  }

  function fullTime(iso) {
    var t = parseTime(iso);
    return t == null ? '' : new Date(t).toLocaleString();
  }

  function clockTime(t) {
    var d = new Date(t);
    return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  }

  function fmtSize(n) {
    if (n == null || isNaN(n)) return '';
    if (n < 1024) return n + ' B';
    var units = ['KB', 'MB', 'GB', 'TB'];
    var v = n, i = -1;
    do { v /= 1024; i++; } while (v >= 1024 && i < units.length - 1);
    return (v < 10 ? v.toFixed(1) : Math.round(v)) + ' ' + units[i];
  }

  function fmtDuration(ms) {
    if (ms == null) return '';
    if (ms < 1000) return ms + ' ms';
    var s = ms / 1000;
    if (s < 60) return (s < 10 ? s.toFixed(1) : Math.round(s)) + ' s';
    var m = Math.floor(s / 60), r = Math.round(s % 60);
    return m + 'm ' + (r < 10 ? '0' : '') + r + 's';
  }

  /** Text with `code` spans, as DOM nodes (server sentences use backticks). */
  function richText(text) {
    var frag = document.createDocumentFragment();
    String(text == null ? '' : text).split(/(`[^`\n]+`)/).forEach(function (part) {
      if (!part) return;
      if (part.length > 2 && part[0] === '`' && part[part.length - 1] === '`') frag.appendChild(h('code', { text: part.slice(1, -1) }));
      else frag.appendChild(document.createTextNode(part));
    });
    return frag;
  }

  function humanize(code) {
    var s = String(code || 'error').replace(/[_-]+/g, ' ');
    return s.charAt(0).toUpperCase() + s.slice(1);
  }

  /**
   * A chat title as plain text: titles are often written by the model, in
   * Markdown (`**help**`), and are shown as text, never rendered.
   */
  function plainTitle(t) {
    var s = String(t == null ? '' : t)
      .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
      .replace(/^\s*(?:#{1,6}\s+|>\s*|[-*+]\s+)/, '')
      .replace(/(\*\*|__|~~)(?=\S)([\s\S]*?\S)\1/g, '$2')
      .replace(/(^|[^\w*])\*(?=\S)([^*]*?\S)\*(?!\w)/g, '$1$2')
      .replace(/(^|[^\w_])_(?=\S)([^_]*?\S)_(?!\w)/g, '$1$2')
      .replace(/`+([^`]*)`+/g, '$1')
      .replace(/\s+/g, ' ')
      .trim();
    return s || 'New chat';
  }

  // ================================================================ REST

  function ApiError(status, code, message) {
    this.status = status;
    this.code = code;
    this.message = message;
  }
  ApiError.prototype = Object.create(Error.prototype);

  var redirecting = false;
  function goLogin() {
    if (redirecting) return;
    redirecting = true;
    var here = location.pathname + location.search;
    location.href = '/login' + (here && here !== '/' ? '?next=' + enc(here) : '');
  }

  function api(method, path, body) {
    var init = { method: method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).catch(function () {
      throw new ApiError(0, 'network', 'Cannot reach the IronClaw server. Check that it is running.');
    }).then(function (res) {
      noteServerClock(res);
      if (res.status === 401) {
        goLogin();
        throw new ApiError(401, 'unauthorized', 'Your sign-in has expired.');
      }
      if (res.status === 204) return null;
      return res.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { /* not JSON */ }
        if (!res.ok) {
          var err = (data && data.error) || {};
          throw new ApiError(res.status, err.code || 'http_' + res.status,
            err.message || ('The server answered ' + res.status + (res.statusText ? ' ' + res.statusText : '') + '.'));
        }
        return data;
      });
    });
  }

  // The server's clock, from the Date header, so approval countdowns are right
  // even when this computer's clock is off.
  function noteServerClock(res) {
    var d = res.headers && parseTime(res.headers.get('Date'));
    if (d == null) return;
    var skew = d - Date.now();
    S.skew = Math.abs(skew) > 2000 ? skew : 0;
  }
  function serverNow() { return Date.now() + (S.skew || 0); }

  // ================================================================ state

  var S = {
    me: null,
    sessions: [],
    sessionId: null,
    session: null,           // {id, title, model, approval_mode, provider}
    ws: null,
    wsReady: false,
    wsAttempts: 0,
    wsFailures: 0,
    reconnectTimer: null,
    reconnectAt: 0,
    connLostAt: 0,
    outbox: [],
    health: null,
    models: null,
    modelsError: null,
    skew: 0,
    // conversation
    turnsOpen: new Set(),
    turnsDone: new Set(),
    streams: new Map(),      // turn_id -> [stream, ...] not yet finalised
    cards: new Map(),        // call_id -> card
    restores: new Map(),     // restore_id -> workspace_restored notice
    checkpoints: new Map(),  // call_id -> {call_id, kind, changes, dropped}
    approvals: new Map(),    // approval_id -> approval
    pendingUser: [],         // optimistic user bubbles awaiting their echo
    stopping: false,
    stick: true,
    // files
    filesDir: '',
    filesGen: 0,
    filesOpen: true,
    filesChanged: new Set(),
    uploadQueue: [],
    uploadsActive: 0,
    // logs
    logUnseen: 0,
    logUnseenError: false,
    logTab: 'logs',
    providerBannerDismissed: null
  };

  var E = {};  // elements, filled in init()

  // ================================================================ toasts, dialogs

  function toast(msg, kind, ms) {
    kind = kind || 'error';
    var close = h('button.icon-btn', { type: 'button', 'aria-label': 'Dismiss' }, icon('x', 'tiny'));
    var t = h('div.toast.' + kind, { role: kind === 'error' ? 'alert' : 'status' }, h('span', { text: msg }), close);
    var remove = function () { if (t.parentNode) t.parentNode.removeChild(t); };
    close.addEventListener('click', remove);
    E.toasts.appendChild(t);
    while (E.toasts.children.length > 4) E.toasts.removeChild(E.toasts.firstChild);
    setTimeout(remove, ms || (kind === 'error' ? 8000 : 4000));
  }

  function confirmDialog(title, body, okLabel) {
    var d = E.confirm;
    if (!d || typeof d.showModal !== 'function') return Promise.resolve(window.confirm(title + '\n\n' + body));
    $('#confirm-title').textContent = title;
    $('#confirm-body').textContent = body;
    $('#confirm-ok').textContent = okLabel || 'Delete';
    d.returnValue = '';
    d.showModal();
    $('#confirm-cancel').focus();
    return new Promise(function (resolve) {
      d.addEventListener('close', function () { resolve(d.returnValue === 'ok'); }, { once: true });
    });
  }

  /**
   * A question with several answers, e.g. [{value, label, cls, focus}];
   * resolves to the chosen value, or 'cancel' when dismissed.
   */
  function choiceDialog(title, body, choices) {
    var d = E.choice;
    if (!d || typeof d.showModal !== 'function') {
      return Promise.resolve(window.confirm(title + '\n\n' + body) ? choices[choices.length - 1].value : 'cancel');
    }
    $('#choice-title').textContent = title;
    $('#choice-body').textContent = body;
    var actions = $('#choice-actions');
    actions.replaceChildren();
    var first = null;
    choices.forEach(function (c) {
      var b = h('button.btn' + (c.cls ? '.' + c.cls : ''), { type: 'submit', value: c.value, 'data-choice': c.value, text: c.label });
      if (c.focus || !first) first = b;
      actions.appendChild(b);
    });
    d.returnValue = '';
    d.showModal();
    if (first) first.focus();
    return new Promise(function (resolve) {
      d.addEventListener('close', function () { resolve(d.returnValue || 'cancel'); }, { once: true });
    });
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    return new Promise(function (resolve, reject) {
      var ta = h('textarea', { readonly: true, 'aria-hidden': 'true', class: 'sr-only' });
      ta.value = text;
      document.body.appendChild(ta);
      ta.select();
      var ok = false;
      try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
      document.body.removeChild(ta);
      if (ok) resolve(); else reject(new Error('copy failed'));
    });
  }

  // ================================================================ theme

  function effectiveTheme() {
    var t = document.documentElement.getAttribute('data-theme');
    if (t) return t;
    return window.matchMedia && window.matchMedia('(prefers-color-scheme: light)').matches ? 'light' : 'dark';
  }
  function updateThemeButton() {
    var next = effectiveTheme() === 'dark' ? 'light' : 'dark';
    E.themeToggle.setAttribute('aria-label', 'Switch to ' + next + ' theme');
    E.themeToggle.title = 'Switch to ' + next + ' theme';
  }
  function toggleTheme() {
    var next = effectiveTheme() === 'dark' ? 'light' : 'dark';
    document.documentElement.setAttribute('data-theme', next);
    try { localStorage.setItem('ironclaw.theme', next); } catch (e) { /* ignore */ }
    updateThemeButton();
  }

  // ================================================================ sidebar: sessions

  function refreshSessions() {
    return api('GET', '/api/sessions').then(function (list) {
      S.sessions = Array.isArray(list) ? list : [];
      S.sessions.sort(function (a, b) { return (parseTime(b.updated_at) || 0) - (parseTime(a.updated_at) || 0); });
      // The server may have renamed the open chat (automatic titles).
      var cur = S.sessions.find(function (x) { return x.id === S.sessionId; });
      if (cur && S.session && cur.title && cur.title !== S.session.title && E.titleInput.hidden) {
        S.session.title = cur.title;
        renderHeader();
      }
      renderSessions();
      return S.sessions;
    }).catch(function (e) {
      if (e.status !== 401) renderSessions(e.message);
      return S.sessions;
    });
  }

  function sessionGroup(iso) {
    var t = parseTime(iso);
    if (t == null) return 'Older';
    var now = new Date();
    var startToday = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
    if (t >= startToday) return 'Today';
    if (t >= startToday - 86400000) return 'Yesterday';
    if (t >= startToday - 7 * 86400000) return 'Previous 7 days';
    if (t >= startToday - 30 * 86400000) return 'Previous 30 days';
    return 'Older';
  }

  function renderSessions(errorMsg) {
    var box = E.sessionList;
    // Re-rendering must not drop the keyboard's place in the list.
    var focused = document.activeElement;
    var hadFocus = focused && focused.classList && focused.classList.contains('session-item') && box.contains(focused)
      ? focused.getAttribute('data-session-id') : null;
    box.replaceChildren();
    if (errorMsg && !S.sessions.length) {
      box.appendChild(h('p.session-empty', { text: 'Could not load your chats. ' + errorMsg }));
      return;
    }
    if (!S.sessions.length) {
      box.appendChild(h('p.session-empty', { text: 'No chats yet.' }));
      return;
    }
    var groups = [], byName = {};
    S.sessions.forEach(function (s) {
      var g = sessionGroup(s.updated_at);
      if (!byName[g]) { byName[g] = { name: g, items: [] }; groups.push(byName[g]); }
      byName[g].items.push(s);
    });
    groups.forEach(function (g) {
      var ul = h('ul');
      g.items.forEach(function (s) {
        var active = s.id === S.sessionId;
        var title = plainTitle(s.title);
        var link = h('a.session-item', {
          href: '/?session=' + enc(s.id),
          'data-session-id': s.id,
          'aria-current': active ? 'page' : null,
          tabindex: '-1',
          title: title
        }, h('span.s-title', { text: title }), h('span.s-time', { text: relTime(s.updated_at), 'data-time': s.updated_at }));
        link.addEventListener('click', function (e) {
          if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
          e.preventDefault();
          switchSession(s.id);
          closeSidebar();
        });
        var del = h('button.icon-btn.small.danger.session-del', {
          type: 'button', 'aria-label': 'Delete chat “' + title + '”', title: 'Delete chat (Delete key)',
          'data-session-id': s.id, tabindex: '-1'
        }, icon('trash'));
        del.addEventListener('click', function () { deleteSession(s); });
        ul.appendChild(h('li.session-li' + (active ? '.active' : ''), null, link, del));
      });
      box.appendChild(h('div.session-group', { role: 'group', 'aria-label': g.name },
        h('h3.session-group-title', { text: g.name }), ul));
    });
    var items = sessionItems();
    var stop = items.filter(function (a) { return a.getAttribute('data-session-id') === (hadFocus || S.sessionId); })[0] || items[0];
    if (stop) {
      stop.tabIndex = 0;
      if (hadFocus) stop.focus();
    }
  }

  function sessionItems() {
    return Array.prototype.slice.call(E.sessionList.querySelectorAll('.session-item'));
  }

  /**
   * The chat list is one Tab stop: Up/Down (Home/End) move within it,
   * Enter opens, Delete asks to delete the focused chat.
   */
  function onSessionListKey(e) {
    var item = e.target.closest && e.target.closest('.session-item');
    if (!item || e.altKey || e.ctrlKey || e.metaKey) return;
    var items = sessionItems();
    var i = items.indexOf(item), next = null;
    if (e.key === 'ArrowDown') next = items[Math.min(items.length - 1, i + 1)];
    else if (e.key === 'ArrowUp') next = items[Math.max(0, i - 1)];
    else if (e.key === 'Home') next = items[0];
    else if (e.key === 'End') next = items[items.length - 1];
    else if (e.key === 'Delete') {
      e.preventDefault();
      var s = S.sessions.find(function (x) { return x.id === item.getAttribute('data-session-id'); });
      if (s) deleteSession(s);
      return;
    } else return;
    e.preventDefault();
    if (!next) return;
    items.forEach(function (a) { a.tabIndex = a === next ? 0 : -1; });
    next.focus();
  }

  function updateRelativeTimes() {
    document.querySelectorAll('[data-time]').forEach(function (el) {
      el.textContent = relTime(el.getAttribute('data-time'));
    });
  }

  function newSession() {
    E.newSession.disabled = true;
    return api('POST', '/api/sessions', {}).then(function (s) {
      S.sessions = [s].concat(S.sessions.filter(function (x) { return x.id !== s.id; }));
      switchSession(s.id, s);
      closeSidebar();
      E.composer.focus();
    }).catch(function (e) {
      if (e.status !== 401) toast('Could not start a new chat: ' + e.message);
    }).then(function () { E.newSession.disabled = false; });
  }

  function deleteSession(s) {
    var title = plainTitle(s.title);
    confirmDialog('Delete “' + title + '”?',
      'The conversation, its workspace files and its sandbox are removed for good.', 'Delete chat').then(function (ok) {
      if (!ok) return;
      api('DELETE', sessionUrl(s.id)).then(function () {
        S.sessions = S.sessions.filter(function (x) { return x.id !== s.id; });
        renderSessions();
        if (s.id === S.sessionId) {
          if (S.sessions.length) switchSession(S.sessions[0].id);
          else newSession();
        }
        toast('Chat deleted.', 'ok');
      }).catch(function (e) {
        if (e.status === 404) {
          S.sessions = S.sessions.filter(function (x) { return x.id !== s.id; });
          renderSessions();
        } else if (e.status !== 401) toast('Could not delete the chat: ' + e.message);
      });
    });
  }

  function switchSession(id, summary) {
    if (id === S.sessionId && S.ws) return;
    closeSocket();
    S.sessionId = id;
    S.outbox = [];
    var s = summary || S.sessions.find(function (x) { return x.id === id; }) || null;
    S.session = s ? { id: s.id, title: s.title, model: s.model, approval_mode: s.approval_mode, provider: S.session && S.session.provider } : null;
    resetConversation();
    clearLogs();
    S.logUnseen = 0;
    updateLogBadge();
    setUrl(id);
    renderHeader();
    renderSessions();
    S.filesDir = '';
    E.uploads.querySelectorAll('.upload-item.failed, .upload-item.done').forEach(function (n) { n.remove(); });
    loadFiles('');
    if (S.logTab === 'audit' && !E.logPanel.hidden) loadAudit();
    S.wsAttempts = 0;
    connect();
  }

  function setUrl(id) {
    if (location.protocol === 'file:') return;
    try { history.replaceState(null, '', id ? '/?session=' + enc(id) : '/'); } catch (e) { /* ignore */ }
  }

  function openSidebar() {
    E.app.classList.add('sidebar-open');
    syncBackdrop();
    E.sidebarOpen.setAttribute('aria-expanded', 'true');
    var first = E.sidebar.querySelector('.session-item[aria-current], #new-session');
    if (first) first.focus();
  }
  function closeSidebar() {
    if (!E.app.classList.contains('sidebar-open')) return;
    E.app.classList.remove('sidebar-open');
    syncBackdrop();
    E.sidebarOpen.setAttribute('aria-expanded', 'false');
  }

  // ================================================================ header

  function renderHeader() {
    var s = S.session;
    var title = plainTitle(s && s.title);
    E.titleText.textContent = title;
    E.titleBtn.title = 'Rename “' + title + '”';
    updateDocTitle();
    var mode = s && s.approval_mode;
    E.modeRadios.forEach(function (r) { r.checked = r.value === mode; });
    E.modeGroup.classList.toggle('disabled', !s);
    renderModelPicker();
    var label = 'Model and approval' + (s ? ': ' + (s.model || 'default model') + ', Approval: ' + (MODE_LABEL[mode] || '—') : '');
    E.settingsToggle.setAttribute('aria-label', label);
    E.settingsToggle.title = label;
  }

  var MODE_LABEL = { always: 'Always', risky: 'Risky', never: 'Never' };

  /** The narrow header's menu holding the model and the approval mode. */
  function setSettingsOpen(open) {
    E.chatSettings.classList.toggle('open', open);
    E.settingsToggle.setAttribute('aria-expanded', open ? 'true' : 'false');
  }
  function settingsOpen() { return E.chatSettings.classList.contains('open'); }

  function updateDocTitle() {
    var title = plainTitle(S.session && S.session.title);
    var t = (hasPendingApproval() ? '● Approval needed · ' : '') + title + ' · IronClaw';
    if (document.title !== t) document.title = t;
  }

  function hasPendingApproval() {
    var any = false;
    S.approvals.forEach(function (a) { if (!a.resolved) any = true; });
    return any;
  }

  function startRename() {
    if (!S.sessionId) return;
    E.titleInput.value = plainTitle(S.session && S.session.title);
    E.titleBtn.hidden = true;
    E.titleInput.hidden = false;
    E.titleInput.focus();
    E.titleInput.select();
  }
  function endRename(save) {
    if (E.titleInput.hidden) return;
    var value = E.titleInput.value.trim();
    E.titleInput.hidden = true;
    E.titleBtn.hidden = false;
    if (!save || !S.session || !value || value === S.session.title || value === plainTitle(S.session.title)) { E.titleBtn.focus(); return; }
    var id = S.sessionId, old = S.session.title;
    S.session.title = value;
    renderHeader();
    patchSession(id, { title: value }).catch(function () {
      if (S.session && S.sessionId === id) { S.session.title = old; renderHeader(); }
    });
    E.titleBtn.focus();
  }

  function patchSession(id, body) {
    return api('PATCH', sessionUrl(id), body).then(function (s) {
      if (s && s.id) {
        S.sessions = S.sessions.map(function (x) { return x.id === s.id ? s : x; });
        if (S.sessionId === s.id && S.session) {
          S.session.title = s.title;
          S.session.model = s.model;
          S.session.approval_mode = s.approval_mode;
        }
        renderSessions();
        renderHeader();
      }
      return s;
    }).catch(function (e) {
      if (e.status !== 401) toast('Could not save the change: ' + e.message);
      throw e;
    });
  }

  function loadModels() {
    return api('GET', '/api/models').then(function (r) {
      S.models = r && Array.isArray(r.models) ? r : { models: [], current: '' };
      S.modelsError = null;
      renderModelPicker();
    }).catch(function (e) {
      S.models = null;
      S.modelsError = e.message;
      renderModelPicker();
    });
  }

  function renderModelPicker() {
    var sel = E.modelPicker;
    var current = (S.session && S.session.model) || (S.models && S.models.current) || '';
    var list = (S.models && S.models.models) || [];
    sel.replaceChildren();
    list.forEach(function (m) { sel.appendChild(h('option', { value: m, text: m })); });
    // Ollama names `llama3.2` and `llama3.2:latest` the same model.
    if (current && current.indexOf(':') < 0 && list.indexOf(current) < 0 && list.indexOf(current + ':latest') >= 0) {
      current = current + ':latest';
    }
    if (current && list.indexOf(current) < 0) {
      sel.insertBefore(h('option', { value: current, text: S.models ? current + ' (not installed)' : current }), sel.firstChild);
    }
    if (!sel.options.length) sel.appendChild(h('option', { value: '', text: 'No model' }));
    sel.value = current;
    sel.disabled = !S.models || !S.sessionId || list.length === 0;
    sel.title = S.modelsError ? 'Cannot list models: ' + S.modelsError : 'Model for this chat';
  }

  function onModelChange() {
    var id = S.sessionId, value = E.modelPicker.value;
    if (!id || !S.session || value === S.session.model) return;
    var old = S.session.model;
    S.session.model = value;
    patchSession(id, { model: value }).then(function () {
      toast('This chat now uses ' + value + '.', 'ok', 2500);
    }).catch(function () {
      if (S.session && S.sessionId === id) { S.session.model = old; renderModelPicker(); }
    });
  }

  function onModeChange(e) {
    var id = S.sessionId, value = e.target.value;
    if (!id || !S.session || value === S.session.approval_mode) return;
    if (value === 'never') {
      // Until confirmed, the switch keeps showing the mode in force.
      renderHeader();
      confirmDialog('Never ask for approval?',
        'Every command the agent writes will run without asking you first, including ones that delete files or reach the network. You can switch back at any time.',
        'Never ask').then(function (ok) {
        if (ok && S.sessionId === id && S.session) setMode(id, value);
      });
      return;
    }
    setMode(id, value);
  }

  function setMode(id, value) {
    var old = S.session.approval_mode;
    S.session.approval_mode = value;
    patchSession(id, { approval_mode: value }).catch(function () {
      if (S.session && S.sessionId === id) { S.session.approval_mode = old; renderHeader(); }
    });
  }

  // ---------------------------------------------------------------- health

  function refreshHealth() {
    if (location.protocol === 'file:') { S.health = null; renderStatus('offline'); return Promise.resolve(); }
    return fetch('/api/health', { credentials: 'same-origin', headers: { Accept: 'application/json' } }).then(function (res) {
      noteServerClock(res);
      return res.json();
    }).then(function (j) {
      S.health = j && j.provider ? j : null;
      renderStatus(S.health ? null : 'bad');
    }).catch(function () {
      S.health = null;
      renderStatus('offline');
    });
  }

  function renderStatus(problem) {
    var el = E.statusLine, text, cls, tip;
    var hh = S.health, p = hh && hh.provider;
    if (!p) {
      cls = 'down';
      text = problem === 'offline' ? 'Server unreachable' : 'Status unknown';
      tip = problem === 'offline' ? 'Cannot reach the IronClaw server. Check that it is running.' : 'The server did not report its status.';
    } else {
      var model = p.model || (S.session && S.session.model) || '';
      text = p.kind + (model ? ' · ' + model : '');
      if (!p.reachable) {
        cls = 'down';
        text += ' · unreachable';
        tip = p.hint || (p.kind + ' is not reachable at ' + p.url + '.');
      } else if (!p.model_available) {
        cls = 'warn';
        text += ' · model missing';
        tip = p.hint || ('The model ' + p.model + ' is not available at ' + p.url + '.');
      } else if (hh.docker && !/^ok/i.test(hh.docker)) {
        cls = 'warn';
        tip = 'Docker: ' + hh.docker;
      } else {
        cls = 'ok';
        tip = p.kind + ' at ' + p.url + ' is reachable; model ' + p.model + ' is available.';
      }
    }
    el.classList.remove('ok', 'warn', 'down');
    el.classList.add(cls);
    E.statusText.textContent = text;
    el.title = tip;
    el.setAttribute('aria-label', 'Model provider status: ' + text + '. ' + tip);
    renderStatusPopover();

    // A persistent, dismissable banner when the model cannot be used.
    var bad = p && (!p.reachable || !p.model_available);
    var msg = bad ? tip : '';
    if (bad && S.providerBannerDismissed !== msg) {
      E.providerText.replaceChildren(richText(msg));
      E.providerBanner.hidden = false;
    } else {
      E.providerBanner.hidden = true;
    }
  }

  function renderStatusPopover() {
    var pop = E.statusPopover, hh = S.health;
    pop.replaceChildren();
    pop.appendChild(h('h3', { text: 'System status' }));
    if (!hh) {
      pop.appendChild(h('p.muted', { text: 'Cannot reach the IronClaw server. Check that it is running; this page retries every 30 seconds.' }));
      return;
    }
    var p = hh.provider || {};
    var yes = function (b) { return h('span.' + (b ? 'pill-ok' : 'pill-bad'), { text: b ? 'yes' : 'no' }); };
    var okText = function (v) { return h('span.' + (/^ok/i.test(String(v)) ? 'pill-ok' : 'pill-bad'), { text: String(v == null ? '—' : v) }); };
    var rows = [
      ['Overall', okText(hh.status)],
      ['Provider', p.kind || '—'],
      ['URL', p.url || '—'],
      ['Reachable', yes(!!p.reachable)],
      ['Model', p.model || '—'],
      ['Model available', yes(!!p.model_available)],
      ['Database', okText(hh.database)],
      ['Docker', okText(hh.docker)]
    ];
    var dl = h('dl');
    rows.forEach(function (r) { dl.appendChild(h('dt', { text: r[0] })); dl.appendChild(h('dd', null, r[1])); });
    pop.appendChild(dl);
    if (p.hint) pop.appendChild(h('p.hint', null, richText(p.hint)));
  }

  function toggleStatusPopover(force) {
    var open = typeof force === 'boolean' ? force : E.statusPopover.hidden;
    E.statusPopover.hidden = !open;
    E.statusLine.setAttribute('aria-expanded', open ? 'true' : 'false');
    if (open) refreshHealth();
  }

  // ================================================================ WebSocket

  function connect() {
    clearTimeout(S.reconnectTimer);
    S.reconnectTimer = null;
    if (location.protocol === 'file:' || !location.host) return;
    var url = (location.protocol === 'https:' ? 'wss' : 'ws') + '://' + location.host + '/ws' +
      (S.sessionId ? '?session=' + enc(S.sessionId) : '');
    var ws;
    try { ws = new WebSocket(url); } catch (e) { scheduleReconnect(); return; }
    S.ws = ws;
    S.wsReady = false;
    if (!S.connLostAt) S.connLostAt = Date.now();
    ws.onmessage = function (m) {
      if (S.ws !== ws) return;
      var ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      if (!ev || typeof ev.type !== 'string') return;
      try { handleFrame(ev); } catch (err) { if (window.console) console.error('IronClaw: could not show event', ev, err); }
    };
    ws.onclose = function () {
      if (S.ws !== ws) return;
      S.ws = null;
      if (S.wsReady) { S.wsFailures = 0; S.connLostAt = Date.now(); } else S.wsFailures++;
      S.wsReady = false;
      scheduleReconnect();
    };
    ws.onerror = function () { /* onclose follows */ };
  }

  function closeSocket() {
    clearTimeout(S.reconnectTimer);
    S.reconnectTimer = null;
    var ws = S.ws;
    S.ws = null;
    S.wsReady = false;
    S.connLostAt = 0;
    if (ws) { try { ws.close(1000, 'switching chat'); } catch (e) { /* ignore */ } }
    renderConn();
  }

  function scheduleReconnect() {
    var n = S.wsAttempts++;
    var base = n === 0 ? 250 : Math.min(15000, 1000 * Math.pow(2, n - 1));
    var delay = Math.round(base * (0.8 + Math.random() * 0.4));
    S.reconnectAt = Date.now() + delay;
    clearTimeout(S.reconnectTimer);
    S.reconnectTimer = setTimeout(reconnectNow, delay);
    renderConn();
  }

  function reconnectNow() {
    clearTimeout(S.reconnectTimer);
    S.reconnectTimer = null;
    // Before reopening, check we are still signed in and the chat still exists:
    // a refused upgrade looks the same as a network error from here.
    api('GET', '/api/me').then(function () {
      if (S.sessionId && S.wsFailures >= 2) {
        return refreshSessions().then(function (list) {
          if (S.sessionId && !list.some(function (x) { return x.id === S.sessionId; })) {
            toast('This chat no longer exists. Opening your latest chat.', 'error');
            var next = list[0];
            S.sessionId = null;
            if (next) { switchSession(next.id); return; }
            setUrl(null);
          }
          if (!S.ws) connect();
        });
      }
      connect();
    }).catch(function (e) {
      if (e.status === 401) return;
      if (e.status === 0) { scheduleReconnect(); return; }
      connect();
    });
  }

  function renderConn() {
    var down = !S.wsReady && S.connLostAt && Date.now() - S.connLostAt > 1200 && location.protocol !== 'file:';
    if (!down) { E.connBanner.hidden = true; return; }
    var text;
    if (S.reconnectTimer) {
      var secs = Math.max(0, Math.ceil((S.reconnectAt - Date.now()) / 1000));
      text = 'Connection to the server lost. Reconnecting' + (secs > 0 ? ' in ' + secs + ' s…' : '…');
    } else {
      text = 'Connecting to the server…';
    }
    E.connText.textContent = text;
    E.connRetry.hidden = !S.reconnectTimer;
    E.connBanner.hidden = false;
  }

  function wsSend(obj) {
    if (S.ws && S.wsReady && S.ws.readyState === WebSocket.OPEN) {
      S.ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  function handleFrame(ev) {
    if (ev.type === 'session') { applySession(ev); return; }
    if (ev.type === 'history') { replayHistory(ev); return; }
    renderEvent(ev, { live: true });
  }

  function applySession(ev) {
    var changed = S.sessionId !== ev.session_id;
    S.sessionId = ev.session_id;
    S.session = {
      id: ev.session_id, title: ev.title, model: ev.model,
      approval_mode: ev.approval_mode, provider: ev.provider
    };
    if (ev.user && !S.me) setMe(ev.user);
    S.wsReady = true;
    S.wsAttempts = 0;
    S.wsFailures = 0;
    S.connLostAt = 0;
    renderConn();
    setUrl(ev.session_id);
    renderHeader();
    var known = S.sessions.some(function (x) { return x.id === ev.session_id; });
    if (!known || changed) refreshSessions(); else renderSessions();
    if (changed) { S.filesDir = ''; loadFiles(''); }
    // Messages typed while disconnected.
    var out = S.outbox;
    S.outbox = [];
    out.forEach(function (m) { wsSend(m); });
  }

  // ================================================================ conversation

  function resetConversation() {
    E.messages.replaceChildren();
    S.turnsOpen.clear();
    S.turnsDone.clear();
    S.streams.clear();
    S.cards.clear();
    S.restores.clear();
    S.checkpoints = new Map();
    S.approvals.clear();
    S.pendingUser = [];
    S.stopping = false;
    S.stick = true;
    updateWorking();
    updateEmpty();
  }

  function replayHistory(ev) {
    if (ev.session_id && S.sessionId && ev.session_id !== S.sessionId) return;
    resetConversation();
    clearLogs();
    // `history` holds the latest events only; what is shown is kept so
    // older pages can be put in front of it ("Load older").
    S.shown = (ev.events || []).slice();
    S.olderBefore = ev.more && ev.before != null ? ev.before : null;
    if (S.olderBefore != null) E.messages.appendChild(olderButton());
    (ev.events || []).forEach(function (e) {
      try { renderEvent(e, { live: false }); } catch (err) { if (window.console) console.error('IronClaw: could not replay event', e, err); }
    });
    updateWorking();
    updateEmpty();
    tickCountdowns();
    if (hasUndoable()) scheduleCheckpoints(0);
    scrollToBottom(true);
    scrollLogToBottom();
  }

  function olderButton() {
    var b = document.createElement('button');
    b.type = 'button';
    b.className = 'load-older';
    b.textContent = 'Load older messages';
    b.addEventListener('click', loadOlder);
    return b;
  }

  /** Fetch the page before the oldest shown event and replay it all. */
  function loadOlder() {
    var sid = S.sessionId, before = S.olderBefore;
    if (!sid || before == null) return;
    api('GET', sessionUrl(sid) + '/events?before=' + enc(String(before)) + '&limit=500').then(function (page) {
      if (S.sessionId !== sid) return;
      var top = E.messages.scrollHeight - E.messages.scrollTop;
      replayHistory({ session_id: sid, events: (page.events || []).concat(S.shown || []), more: page.more, before: page.before });
      E.messages.scrollTop = E.messages.scrollHeight - top;
    }).catch(function (e) { if (window.console) console.error('IronClaw: could not load older events', e); });
  }

  /** One path for live events and history replay. */
  function renderEvent(ev, opts) {
    var live = !!(opts && opts.live);
    if (live && ev.type !== 'assistant_delta' && S.shown) S.shown.push(ev);
    switch (ev.type) {
      case 'user_message': onUserMessage(ev, live); break;
      case 'assistant_delta':
        onAssistantDelta(ev, live);
        if (live) return; // shown with the next frame (showDeltas)
        break;
      case 'assistant_message': onAssistantMessage(ev, live); break;
      case 'tool_call': onToolCall(ev, live); break;
      case 'approval_request': onApprovalRequest(ev, live); break;
      case 'approval_resolved': onApprovalResolved(ev, live); break;
      case 'exec_output': onExecOutput(ev, live); break;
      case 'exec_done': onExecDone(ev, live); break;
      case 'files_changed': onFilesChanged(ev, live); break;
      case 'workspace_restored': onWorkspaceRestored(ev, live); break;
      case 'log':
        addLog(ev, live);
        if (live && /checkpoints were dropped/.test(String(ev.message || ''))) scheduleCheckpoints();
        return;
      case 'turn_done': onTurnDone(ev, live); break;
      case 'error': onError(ev, live); break;
      default: return; // unknown event types are ignored
    }
    if (live) {
      updateWorking();
      updateEmpty();
      scheduleStick();
    }
  }

  function appendMsg(node) {
    // Optimistic bubbles of messages not yet echoed stay at the bottom.
    var firstPending = null;
    for (var i = 0; i < S.pendingUser.length; i++) {
      if (S.pendingUser[i].el.parentNode === E.messages) { firstPending = S.pendingUser[i].el; break; }
    }
    if (firstPending && firstPending !== node) E.messages.insertBefore(node, firstPending);
    else E.messages.appendChild(node);
  }

  function openTurn(turnId) {
    if (turnId && !S.turnsDone.has(turnId)) S.turnsOpen.add(turnId);
  }

  // ---------------------------------------------------------------- user

  function buildUserMsg(text) {
    var node = h('div.msg.msg-user', null, h('div.bubble', { text: text }));
    collapseIfLong(node, text, LONG_USER);
    return node;
  }

  // Messages longer than this are shown folded, with "Show more". Judged
  // on the text, not measured, so no layout is read to decide.
  var LONG_USER = { lines: 24, chars: 2000 };
  // A reply being streamed is never folded under the reader; replies are
  // folded when the chat is loaded again.
  var LONG_REPLY = { lines: 120, chars: 8000 };

  function collapseIfLong(node, text, limit) {
    text = String(text || '');
    if (node.classList.contains('collapsible')) return;
    var lines = 1;
    for (var i = text.indexOf('\n'); i >= 0 && lines <= limit.lines; i = text.indexOf('\n', i + 1)) lines++;
    if (lines <= limit.lines && text.length <= limit.chars) return;
    var more = h('button.link-btn.show-more', { type: 'button', 'data-action': 'show-more', 'aria-expanded': 'false', text: 'Show more' });
    more.addEventListener('click', function () {
      var open = node.classList.toggle('collapsed') === false;
      more.setAttribute('aria-expanded', open ? 'true' : 'false');
      more.textContent = open ? 'Show less' : 'Show more';
      if (!open) node.scrollIntoView({ block: 'nearest' });
    });
    node.classList.add('collapsible', 'collapsed');
    node.appendChild(h('div.show-more-row', null, more));
  }

  /** An id for a message this page sends; the server echoes it back. */
  function newClientId() {
    var c = window.crypto;
    if (c && typeof c.randomUUID === 'function') return c.randomUUID();
    if (c && typeof c.getRandomValues === 'function') {
      var b = c.getRandomValues(new Uint8Array(16));
      return Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join('');
    }
    return Date.now().toString(36) + '-' + Math.random().toString(36).slice(2);
  }

  /** Whether `ev` is the echo of the optimistic message `p`. The server
   *  trims the text, so only an older server without ids is matched by it. */
  function isEchoOf(ev, p) {
    if (ev.client_id != null) return ev.client_id === p.clientId;
    return p.text.trim() === String(ev.text || '').trim();
  }

  function onUserMessage(ev, live) {
    openTurn(ev.turn_id);
    var node = null;
    if (live) {
      for (var i = 0; i < S.pendingUser.length; i++) {
        if (isEchoOf(ev, S.pendingUser[i])) {
          node = S.pendingUser[i].el;
          S.pendingUser.splice(i, 1);
          node.classList.remove('pending');
          var tag = node.querySelector('.queued-tag');
          if (tag) tag.remove();
          var bubble = node.querySelector('.bubble');
          if (bubble && bubble.textContent !== ev.text) bubble.textContent = ev.text;
          break;
        }
      }
    }
    if (!node) node = buildUserMsg(ev.text);
    node.setAttribute('data-turn-id', ev.turn_id || '');
    appendMsg(node);
    if (live) S.stick = true;
  }

  function sendMessage() {
    var text = E.composer.value;
    if (!text.trim()) { E.composer.focus(); return; }
    var clientId = newClientId();
    var msg = { type: 'user_message', text: text, client_id: clientId };
    var sent = wsSend(msg);
    if (!sent) S.outbox.push(msg);
    var node = buildUserMsg(text);
    node.classList.add('pending');
    var label = !sent ? 'Will send when reconnected' : (S.turnsOpen.size ? 'Queued' : '');
    if (label) node.querySelector('.bubble').appendChild(h('span.queued-tag', { text: label }));
    S.pendingUser.push({ text: text, el: node, clientId: clientId });
    E.messages.appendChild(node);
    E.composer.value = '';
    autosize();
    updateSendState();
    updateEmpty();
    S.stick = true;
    scrollToBottom(true);
  }

  // ---------------------------------------------------------------- assistant

  function newStream(turnId) {
    var bubble = h('div.bubble.streaming', { 'aria-busy': 'true' });
    var text = document.createTextNode('');
    bubble.appendChild(text);
    var el = h('div.msg.msg-assistant', { 'data-turn-id': turnId || '' },
      h('img.avatar-bot', { src: 'static/favicon.svg', alt: '', width: 30, height: 30 }), bubble);
    appendMsg(el);
    var s = { el: el, bubble: bubble, textNode: text, text: '', sealed: false, turnId: turnId };
    var list = S.streams.get(turnId);
    if (!list) { list = []; S.streams.set(turnId, list); }
    list.push(s);
    return s;
  }

  function renderMarkdownInto(bubble, text) {
    bubble.replaceChildren();
    bubble.classList.remove('streaming');
    bubble.classList.add('md');
    bubble.removeAttribute('aria-busy');
    if (window.IronMarkdown) {
      try {
        bubble.appendChild(window.IronMarkdown.render(text, document));
        if (window.IronSyntax) window.IronSyntax.highlightWithin(bubble);
        return;
      } catch (e) { /* fall back to text */ }
    }
    bubble.appendChild(h('p', { text: text }));
  }

  function onAssistantDelta(ev, live) {
    openTurn(ev.turn_id);
    if (!ev.text) return;
    var list = S.streams.get(ev.turn_id);
    var s = list && list.length && !list[list.length - 1].sealed ? list[list.length - 1] : newStream(ev.turn_id);
    s.text += ev.text;
    if (!live) { s.textNode.appendData(ev.text); return; }
    s.unshown = (s.unshown || '') + ev.text;
    unshownStreams.add(s);
    if (!deltaFrame) deltaFrame = requestAnimationFrame(showDeltas);
  }

  // Deltas arrive far faster than frames (a few characters each): they are
  // put into the page once per animation frame, with the working state and
  // the scroll position, instead of once per delta.
  var unshownStreams = new Set();
  var deltaFrame = 0;
  function showDeltas() {
    deltaFrame = 0;
    unshownStreams.forEach(function (s) {
      if (s.unshown && !s.el.hasAttribute('data-done')) appendStreamText(s, s.unshown);
      s.unshown = '';
    });
    unshownStreams.clear();
    updateWorking();
    updateEmpty();
    scheduleStick();
  }

  /** Streamed text goes into one text node per paragraph, so a frame lays
   *  out the paragraph being written, not the whole reply so far. */
  function appendStreamText(s, text) {
    var cut = text.lastIndexOf('\n\n');
    if (cut < 0 || !s.textNode.parentNode) { s.textNode.appendData(text); return; }
    s.textNode.appendData(text.slice(0, cut + 2));
    var part = h('span.stream-part');
    s.textNode = document.createTextNode(text.slice(cut + 2));
    part.appendChild(s.textNode);
    s.bubble.appendChild(part);
  }

  function onAssistantMessage(ev, live) {
    openTurn(ev.turn_id);
    var list = S.streams.get(ev.turn_id);
    var s = list && list.length ? list.shift() : null;
    var text = ev.text || '';
    if (!text.trim()) {
      if (s) s.el.remove();
      return;
    }
    if (!s) {
      s = newStream(ev.turn_id);
      S.streams.get(ev.turn_id).pop();
    }
    renderMarkdownInto(s.bubble, text);
    s.el.setAttribute('data-done', 'true');
    if (!live) collapseIfLong(s.el, text, LONG_REPLY);
  }

  function finishStreams(turnId) {
    var list = S.streams.get(turnId);
    if (!list) return;
    list.forEach(function (s) {
      if (!s.text.trim()) { s.el.remove(); return; }
      renderMarkdownInto(s.bubble, s.text);
      s.el.setAttribute('data-done', 'true');
    });
    S.streams.delete(turnId);
  }

  function streamingActive() {
    var active = false;
    S.streams.forEach(function (list) {
      list.forEach(function (s) { if (!s.sealed && S.turnsOpen.has(s.turnId)) active = true; });
    });
    return active;
  }

  // ---------------------------------------------------------------- tool cards

  var TOOL_LABEL = { shell: 'Shell', python: 'Python' };
  var RISK_LABEL = { low: 'Low risk', medium: 'Medium risk', high: 'High risk' };

  function codeBlock(code, lang) {
    return h('div.code-block', null,
      h('div.code-head', null,
        h('span.code-lang', { text: lang }),
        h('button.copy-btn', { type: 'button', 'aria-label': 'Copy code', title: 'Copy code', text: 'Copy' })),
      h('pre', null, highlighted(h('code', { class: 'language-' + lang, text: code }), lang)));
  }

  function highlighted(code, lang) {
    if (window.IronSyntax) window.IronSyntax.highlight(code, lang);
    return code;
  }

  function buildCard(callId, data) {
    var tool = data && data.tool || 'shell';
    var risk = (data && data.risk) || { level: 'medium', reasons: [] };
    var level = RISK_LABEL[risk.level] ? risk.level : 'high';
    var reasons = Array.isArray(risk.reasons) ? risk.reasons : [];
    var status = h('span.tool-status', { role: 'status' });
    var output = h('pre.tool-output', { hidden: true, tabindex: '0', 'aria-label': 'Command output' });
    var el = h('article.tool-card.card-risk-' + level, {
      'data-call-id': callId,
      'data-tool': tool,
      'data-risk': level,
      'aria-label': (TOOL_LABEL[tool] || tool) + ' command, ' + RISK_LABEL[level]
    },
      h('div.tool-head', null,
        h('span.tool-name', null, icon(tool === 'python' ? 'code' : 'terminal'), TOOL_LABEL[tool] || String(tool)),
        h('span.risk-pill.risk-' + level, { text: RISK_LABEL[level], title: reasons.join('\n') || RISK_LABEL[level] }),
        h('span.spacer'),
        status),
      reasons.length ? h('ul.tool-reasons', { 'aria-label': 'Why this risk level' },
        reasons.map(function (r) { return h('li', { text: r }); })) : null,
      codeBlock(data && data.code != null ? data.code : '', tool === 'python' ? 'python' : 'bash'),
      output);
    var card = {
      callId: callId, el: el, status: status, output: output, term: null,
      outLen: 0, truncated: false, hasOutput: false, done: false, state: 'pending',
      turnId: data && data.turn_id || null, code: data && data.code != null ? String(data.code) : null,
      // undo: what the command changed, and whether it can still be undone
      changes: null, undoSlot: null, undone: false, gone: false
    };
    S.cards.set(callId, card);
    appendMsg(el);
    return card;
  }

  function getCard(callId, data) {
    return S.cards.get(callId) || buildCard(callId, data);
  }

  function setStatus(card, kind, parts, spin) {
    card.status.className = 'tool-status' + (kind ? ' ' + kind : '');
    card.status.replaceChildren();
    if (spin) card.status.appendChild(h('span.spinner', { 'aria-hidden': 'true' }));
    appendKids(card.status, parts);
  }

  function onToolCall(ev) {
    openTurn(ev.turn_id);
    // Text streamed before this call belongs above it; later text goes below.
    var list = S.streams.get(ev.turn_id);
    if (list) list.forEach(function (s) { s.sealed = true; });
    var card = getCard(ev.call_id, ev);
    if (!card.turnId) card.turnId = ev.turn_id;
    if (card.code == null && ev.code != null) card.code = String(ev.code);
    // The mode the call was judged under (older events lack it).
    if (ev.approval_mode) card.mode = ev.approval_mode;
    if (card.state === 'pending') setStatus(card, '', 'Starting…', true);
  }

  function onApprovalRequest(ev, live) {
    var card = getCard(ev.call_id, ev);
    card.asked = true;
    if (S.approvals.has(ev.approval_id)) return;
    var countdown = h('span.ap-countdown');
    var mk = function (action, label, cls, decision, remember) {
      return h('button.btn.small' + (cls ? '.' + cls : ''), {
        type: 'button', 'data-action': action, 'data-decision': decision,
        'data-remember': remember ? 'true' : 'false', text: label
      });
    };
    var actions = h('div.ap-actions', null,
      mk('approve', 'Approve', 'success', 'approve', false),
      mk('approve-session', 'Approve for this session', '', 'approve', true),
      mk('deny', 'Deny', 'danger', 'deny', false));
    var box = h('div.approval', { role: 'group', 'aria-label': 'Approval needed', 'data-approval-id': ev.approval_id },
      h('div.ap-text', null,
        h('div.ap-title', null, icon('shield'), 'Approval needed'),
        countdown),
      actions);
    card.el.insertBefore(box, card.output);
    card.el.classList.add('awaiting');
    card.state = 'awaiting';
    var a = {
      id: ev.approval_id, card: card, box: box, countdown: countdown, actions: actions,
      expiresAt: parseTime(ev.expires_at), resolved: false
    };
    S.approvals.set(ev.approval_id, a);
    setStatus(card, 'warn', 'Waiting for your approval');
    tickCountdowns();
    updateDocTitle();
    if (live) S.stick = true;
  }

  function decide(btn) {
    var box = btn.closest('.approval');
    if (!box) return;
    var id = box.getAttribute('data-approval-id');
    var a = S.approvals.get(id);
    if (!a || a.resolved) return;
    var msg = {
      type: 'approval_decision', approval_id: id,
      decision: btn.getAttribute('data-decision'),
      remember: btn.getAttribute('data-remember') === 'true'
    };
    if (!wsSend(msg)) {
      toast('Not connected to the server. Your answer was not sent; try again in a moment.');
      return;
    }
    a.actions.querySelectorAll('button').forEach(function (b) { b.disabled = true; });
    btn.classList.add('loading');
    a.countdown.textContent = 'Sending your answer…';
    a.sent = true;
    // The buttons are gone once answered: the keyboard goes back to the message box.
    focusComposer();
    // No resolution after a while (the server refused it, or the socket
    // dropped): let the person answer again.
    a.retryTimer = setTimeout(function () {
      if (a.resolved || S.approvals.get(id) !== a) return;
      a.sent = false;
      btn.classList.remove('loading');
      a.actions.querySelectorAll('button').forEach(function (b) { b.disabled = false; });
      tickCountdowns();
    }, 10000);
  }

  function onApprovalResolved(ev) {
    var a = S.approvals.get(ev.approval_id);
    var card = a ? a.card : getCard(ev.call_id, null);
    card.asked = true;
    var box = a ? a.box : null;
    if (!box) {
      box = h('div.approval', { 'data-approval-id': ev.approval_id });
      card.el.insertBefore(box, card.output);
    }
    var by = ev.by === 'policy' ? 'by policy' : 'by you';
    var label, ic;
    if (ev.decision === 'approved') { label = 'Approved ' + by; ic = 'check'; }
    else if (ev.decision === 'denied') { label = 'Denied ' + by + ' — not run'; ic = 'ban'; }
    else { label = 'Timed out without an answer — not run'; ic = 'clock'; }
    box.classList.add('resolved');
    box.setAttribute('data-decision', ev.decision);
    box.removeAttribute('role');
    box.replaceChildren(h('span.ap-outcome.' + ev.decision, null, icon(ic), label));
    card.el.classList.remove('awaiting');
    if (a) { a.resolved = true; clearTimeout(a.retryTimer); }
    S.approvals.delete(ev.approval_id);
    if (!card.done) {
      if (ev.decision === 'approved') {
        card.state = 'running';
        setStatus(card, '', 'Running…', true);
      } else {
        card.state = 'denied';
        card.done = true;
        setStatus(card, ev.decision === 'denied' ? 'fail' : 'warn', ev.decision === 'denied' ? 'Denied' : 'Timed out');
      }
    }
    updateDocTitle();
  }

  var MAX_OUTPUT_CHARS = 2 * 1024 * 1024;

  function onExecOutput(ev, live) {
    var card = getCard(ev.call_id, null);
    if (card.state === 'pending' || card.state === 'awaiting') {
      card.state = 'running';
      setStatus(card, '', 'Running…', true);
    }
    noteUnasked(card);
    if (card.truncated || !ev.data) return;
    keepOutput(card, ev);
    var out = card.output;
    var atBottom = !live || out.hidden || out.scrollHeight - out.scrollTop - out.clientHeight < 30;
    out.hidden = false;
    var data = String(ev.data);
    if (card.outLen + data.length > MAX_OUTPUT_CHARS) {
      data = data.slice(0, Math.max(0, MAX_OUTPUT_CHARS - card.outLen));
      card.truncated = true;
    }
    card.outLen += data.length;
    if (!card.term) card.term = window.IronTerminal.view(out, document);
    card.term.write(data, ev.stream === 'stderr' ? 'stderr' : 'stdout');
    if (card.truncated) {
      out.appendChild(h('span.out-note', { text: '\n[more output not shown here]' }));
    }
    card.hasOutput = true;
    if (atBottom && live) out.scrollTop = out.scrollHeight;
    limitOutput(card, live);
  }

  // ---------------------------------------------------------------- long output

  // A card shows the last lines of its command's output; "Show all" puts
  // the rest in, Copy and Download take all of it. 20 000 lines in the page
  // make every layout slow, and the end is what a person looks at first.
  var OUTPUT_TAIL_LINES = 200;

  /** Every chunk as it came (ANSI and all), for Show all, Copy, Download. */
  function keepOutput(card, ev) {
    if (card.refeeding) return;
    if (!card.raw) { card.raw = []; card.rawNewlines = 0; card.rawEndsLine = true; }
    var data = String(ev.data);
    card.raw.push({ stream: ev.stream, data: data });
    for (var i = data.indexOf('\n'); i >= 0; i = data.indexOf('\n', i + 1)) card.rawNewlines++;
    card.rawEndsLine = data.charAt(data.length - 1) === '\n';
  }

  function outputLines(card) {
    return card.raw ? card.rawNewlines + (card.rawEndsLine ? 0 : 1) : 0;
  }

  function rawOutput(card) {
    return (card.raw || []).map(function (c) { return c.data; }).join('');
  }

  /** Trim the card to its tail, live output once per frame. */
  function limitOutput(card, live) {
    if (card.limitFrame) return;
    var run = function () {
      card.limitFrame = 0;
      if (!card.outputExpanded) trimToLastLines(card, OUTPUT_TAIL_LINES);
      renderOutputBar(card);
    };
    if (live) card.limitFrame = requestAnimationFrame(run);
    else run();
  }

  /** Delete the output's text before its last `keep` lines, whatever
   *  spans it is split into. */
  function trimToLastLines(card, keep) {
    var out = card.output;
    var walker = document.createTreeWalker(out, NodeFilter.SHOW_TEXT);
    var nodes = [], t;
    while ((t = walker.nextNode())) {
      if (!(t.parentNode.classList && t.parentNode.classList.contains('out-note'))) nodes.push(t);
    }
    var seen = 0, atEnd = true;
    for (var i = nodes.length - 1; i >= 0; i--) {
      var text = nodes[i].data;
      var at = text.length;
      if (atEnd && at) {
        // A final newline ends the last line; it does not start another.
        if (text.charAt(at - 1) === '\n') at--;
        atEnd = false;
      }
      while (at > 0) {
        var nl = text.lastIndexOf('\n', at - 1);
        if (nl < 0) break;
        if (++seen === keep) {
          nodes[i].deleteData(0, nl + 1);
          for (var k = 0; k < i; k++) nodes[k].data = '';
          pruneEmpty(card);
          return true;
        }
        at = nl;
      }
    }
    return false;
  }

  /** Drop the spans trimming emptied, but not the one output goes on to. */
  function pruneEmpty(card) {
    var out = card.output;
    // The terminal view's line under the cursor stays, empty or not.
    while (out.firstChild && out.firstChild.textContent === '' &&
           !(out.firstChild.classList && out.firstChild.classList.contains('term-line'))) {
      out.removeChild(out.firstChild);
    }
  }

  function renderOutputBar(card) {
    if (!card.raw) return;
    var total = outputLines(card);
    if (!card.outputBar) {
      var note = h('span.output-note');
      var expand = h('button.link-btn.output-expand', { type: 'button', 'data-action': 'output-expand', 'aria-expanded': 'false' });
      var copy = h('button.link-btn.output-copy', { type: 'button', 'data-action': 'output-copy', text: 'Copy', title: 'Copy all of the output' });
      var download = h('button.link-btn.output-download', {
        type: 'button', 'data-action': 'output-download', title: 'Download all of the output as a text file'
      }, icon('download', 'tiny'), 'Download');
      expand.addEventListener('click', function () { setOutputExpanded(card, !card.outputExpanded); });
      copy.addEventListener('click', function () {
        copyText(window.IronTerminal.renderText([rawOutput(card)])).then(function () {
          copy.textContent = 'Copied';
          setTimeout(function () { copy.textContent = 'Copy'; }, 1500);
        }).catch(function () { toast('Could not copy to the clipboard.'); });
      });
      download.addEventListener('click', function () { downloadOutput(card); });
      card.outputBar = { el: h('div.output-bar', null, note, h('span.spacer'), expand, copy, download), note: note, expand: expand };
      card.output.parentNode.insertBefore(card.outputBar.el, card.output.nextSibling);
    }
    var bar = card.outputBar;
    var long = total > OUTPUT_TAIL_LINES;
    var lines = total + (total === 1 ? ' line' : ' lines');
    bar.note.textContent = long && !card.outputExpanded ? 'Showing the last ' + OUTPUT_TAIL_LINES + ' of ' + lines : lines;
    bar.expand.hidden = !long && !card.outputExpanded;
    bar.expand.textContent = card.outputExpanded ? 'Show the last ' + OUTPUT_TAIL_LINES + ' lines' : 'Show all ' + lines;
    bar.expand.setAttribute('aria-expanded', card.outputExpanded ? 'true' : 'false');
  }

  /** All of the output, put back in through onExecOutput (so it is drawn
   *  the same way), or back to the tail. */
  function setOutputExpanded(card, open) {
    card.outputExpanded = open;
    if (open) {
      card.output.replaceChildren();
      card.term = null;
      card.outLen = 0;
      card.truncated = false;
      card.refeeding = true;
      try {
        card.raw.forEach(function (c) { onExecOutput({ call_id: card.callId, stream: c.stream, data: c.data }, false); });
      } finally { card.refeeding = false; }
    } else {
      trimToLastLines(card, OUTPUT_TAIL_LINES);
      card.output.scrollTop = card.output.scrollHeight;
    }
    renderOutputBar(card);
  }

  function downloadOutput(card) {
    var blob = new Blob([rawOutput(card)], { type: 'text/plain;charset=utf-8' });
    var url = URL.createObjectURL(blob);
    var a = h('a', { href: url, download: 'output-' + String(card.callId).replace(/[^A-Za-z0-9_.-]/g, '_') + '.txt', hidden: true });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
  }

  /**
   * A command that ran with no approval asked says why: its risk was below
   * what the mode asks about, the mode is Never, or the person approved
   * the same command for the session earlier. Judged with the chat's
   * current mode (events do not carry the mode a call was judged under).
   */
  function noteUnasked(card) {
    if (card.asked || card.unasked) return;
    var mode = card.mode || (S.session && S.session.approval_mode);
    var risk = card.el.getAttribute('data-risk');
    var why;
    if (mode === 'never') why = 'approval is set to Never';
    else if (mode === 'risky' && risk !== 'high') why = (RISK_LABEL[risk] || 'low risk').toLowerCase();
    else why = 'approved earlier for this session';
    card.unasked = h('div.approval.resolved.unasked', { 'data-decision': 'unasked' },
      h('span.ap-outcome.unasked', null, icon('shield'), 'Ran without asking: ' + why));
    card.el.insertBefore(card.unasked, card.output);
  }

  function onExecDone(ev) {
    var card = getCard(ev.call_id, null);
    noteUnasked(card);
    card.done = true;
    card.state = 'done';
    var parts = [];
    var kind;
    if (ev.timed_out) {
      kind = 'fail';
      parts.push(icon('clock', 'tiny'), 'Timed out');
    } else if (ev.exit_code == null) {
      kind = 'warn';
      parts.push(icon('stop', 'tiny'), 'Stopped');
    } else {
      kind = ev.exit_code === 0 ? 'ok' : 'fail';
      parts.push(h('span.exit-badge.' + kind, { text: 'exit ' + ev.exit_code, title: 'Exit code ' + ev.exit_code }));
    }
    if (ev.duration_ms != null) parts.push(' · ' + fmtDuration(ev.duration_ms));
    setStatus(card, kind, parts);
    card.el.setAttribute('data-exit-code', ev.exit_code == null ? '' : String(ev.exit_code));
    card.el.setAttribute('data-done', 'true');
    if (!card.hasOutput && !card.el.querySelector('.tool-empty')) {
      card.el.appendChild(h('div.tool-empty', { text: 'No output' }));
    }
  }

  // ---------------------------------------------------------------- files note

  function onFilesChanged(ev, live) {
    var paths = Array.isArray(ev.paths) ? ev.paths : [];
    // A command's changes go on its card, with their diffs and Undo.
    if (ev.call_id && Array.isArray(ev.changes) && ev.changes.length) { onCallChanges(ev, live); return; }
    if (!paths.length) return;
    var shown = paths.slice(0, 6);
    var note = h('div.files-note', null, icon('files', 'tiny'),
      h('span', { text: paths.length === 1 ? 'Workspace file changed: ' : 'Workspace files changed: ' }),
      shown.map(function (p, i) {
        return [i ? ', ' : '', h('button.link-btn.file-link', { type: 'button', 'data-path': p, text: p, title: 'Show in the file panel' })];
      }),
      paths.length > shown.length ? ' and ' + (paths.length - shown.length) + ' more' : '');
    appendMsg(note);
    if (live) {
      paths.forEach(function (p) { S.filesChanged.add(p); });
      scheduleFilesRefresh();
    }
  }

  // ---------------------------------------------------------------- changes, diffs, undo

  var CHANGE_KINDS = { created: 1, modified: 1, deleted: 1 };
  var AUTO_DIFFS = 10;   // diffs fetched when a change list opens; the rest on demand
  var changesSeq = 0;

  function plural(n, one, many) { return n + ' ' + (n === 1 ? one : many); }

  /** "3 files changed": folders are counted only when nothing else changed. */
  function changesLabel(changes) {
    var files = changes.filter(function (c) { return c.kind !== 'dir'; }).length;
    if (files) return plural(files, 'file', 'files') + ' changed';
    return plural(changes.length, 'folder', 'folders') + ' changed';
  }

  function shortCode(code) {
    var line = String(code || '').trim().split('\n')[0];
    if (line.length > 60) line = line.slice(0, 59) + '…';
    else if (String(code || '').trim().indexOf('\n') >= 0) line += ' …';
    return line;
  }

  function onCallChanges(ev, live) {
    var card = getCard(ev.call_id, null);
    var changes = ev.changes.filter(function (c) { return c && typeof c.path === 'string'; });
    if (card.changesBox) card.changesBox.remove();
    card.changes = changes;
    var listId = 'changes-' + (++changesSeq);
    var rows = changes.map(function (c) { return changeRow(card, c); });
    var list = h('ul.change-list', { id: listId, hidden: true, 'aria-label': 'What this command changed' },
      rows.map(function (r) { return r.el; }));
    var toggle = h('button.changes-toggle', {
      type: 'button', 'aria-expanded': 'false', 'aria-controls': listId, 'data-call-id': card.callId,
      title: 'Show what this command changed'
    }, h('span.chev', { 'aria-hidden': 'true' }), icon('files', 'tiny'), h('span', { text: changesLabel(changes) }));
    toggle.addEventListener('click', function () {
      var open = list.hidden;
      list.hidden = !open;
      toggle.setAttribute('aria-expanded', open ? 'true' : 'false');
      toggle.title = open ? 'Hide the changes' : 'Show what this command changed';
      if (open) {
        var auto = 0;
        rows.forEach(function (r) { if (r.diffable && auto++ < AUTO_DIFFS) loadDiff(card, r); });
      }
    });
    var slot = h('span.undo-slot');
    card.undoSlot = slot;
    card.changesBox = h('div.card-changes', null, h('div.changes-bar', null, toggle, h('span.spacer'), slot), list);
    card.el.appendChild(card.changesBox);
    renderUndoSlot(card);
    if (live) {
      changes.forEach(function (c) { S.filesChanged.add(c.path); });
      scheduleFilesRefresh();
      scheduleCheckpoints();
    }
  }

  function changeRow(card, c) {
    var change = CHANGE_KINDS[c.change] ? c.change : 'modified';
    var isDir = c.kind === 'dir';
    var label = c.path + (isDir ? '/' : '');
    var name = change === 'deleted'
      ? h('span.change-path', { text: label })
      : h('button.link-btn.file-link.change-path', { type: 'button', 'data-path': c.path, text: label, title: 'Show in the file panel' });
    var meta = isDir ? 'folder' : c.kind === 'link' ? 'link' : fmtSize(c.size);
    var diff = h('div.change-diff', { hidden: true });
    var row = {
      el: h('li.change-row', { 'data-path': c.path, 'data-change': change, 'data-kind': c.kind || '' },
        h('div.change-head', null,
          h('span.change-badge.change-' + change, { text: change }),
          name,
          h('span.change-size', { text: meta, title: change === 'deleted' ? 'Size before it was deleted' : 'Size now' })),
        diff),
      diff: diff, change: c, diffable: c.kind === 'file', loaded: false, loading: false
    };
    if (row.diffable) {
      var show = h('button.link-btn.show-diff', { type: 'button', text: 'Show diff', 'aria-label': 'Show the diff of ' + c.path });
      show.addEventListener('click', function () { loadDiff(card, row); });
      diff.appendChild(show);
      diff.hidden = false;
    }
    return row;
  }

  function loadDiff(card, row) {
    if (row.loaded || row.loading || !S.sessionId) return;
    var sid = S.sessionId;
    row.loading = true;
    row.diff.hidden = false;
    row.diff.replaceChildren(h('p.diff-note', { text: 'Loading the diff…' }));
    api('GET', sessionUrl(sid) + '/calls/' + enc(card.callId) + '/diff?path=' + enc(row.change.path)).then(function (d) {
      row.loaded = true;
      row.diff.replaceChildren(renderDiff(d || {}, row.change.path));
    }).catch(function (e) {
      if (e.status === 410) {
        row.loaded = true;
        markGone(card.callId);
        row.diff.replaceChildren(h('p.diff-note', { text: 'The checkpoint before this command was dropped, so its diff can no longer be shown.' }));
        return;
      }
      var retry = h('button.link-btn', { type: 'button', text: 'Try again' });
      retry.addEventListener('click', function () { loadDiff(card, row); });
      row.diff.replaceChildren(h('p.diff-note.error', null, 'Could not load the diff: ' + e.message + ' ', retry));
    }).then(function () { row.loading = false; });
  }

  function sizeOrNone(n) { return n == null ? 'none' : fmtSize(n); }

  /** A unified diff as lines styled by kind; all text goes in as text. */
  function renderDiff(d, path) {
    if (d.binary || typeof d.diff !== 'string') {
      return h('p.diff-note.diff-binary', { text: 'Binary or large file, not shown as text: ' +
        sizeOrNone(d.before_size) + ' before, ' + sizeOrNone(d.after_size) + ' after.' });
    }
    var lines = d.diff.split('\n');
    if (lines.length && lines[lines.length - 1] === '') lines.pop();
    var body = h('div.diff-lines');
    var inHunk = false, shown = 0;
    lines.forEach(function (l) {
      var cls;
      if (!inHunk && (l.slice(0, 4) === '--- ' || l.slice(0, 4) === '+++ ' || l === '---' || l === '+++')) cls = 'diff-file';
      else if (l.slice(0, 2) === '@@') { cls = 'diff-hunk'; inHunk = true; }
      else if (l.charAt(0) === '+') cls = 'diff-add';
      else if (l.charAt(0) === '-') cls = 'diff-del';
      else if (l.charAt(0) === '\\') cls = 'diff-meta';
      else cls = 'diff-ctx';
      if (cls !== 'diff-file') shown++;
      body.appendChild(h('span.' + cls, { text: l + '\n' }));
    });
    if (!shown) {
      var same = d.before_size === 0 || d.after_size === 0 ? 'An empty file: no lines to show.' : 'No change in the text.';
      return h('p.diff-note', { text: same });
    }
    return h('pre.diff', { tabindex: '0', 'aria-label': 'Diff of ' + (d.path || path) }, body);
  }

  // ---- Undo

  /** The card or restore notice an id can undo. */
  function undoTarget(id) {
    var card = S.cards.get(id);
    if (card && card.undoSlot) return card;
    return S.restores.get(id) || null;
  }

  function hasUndoable() {
    var any = S.restores.size > 0;
    S.cards.forEach(function (c) { if (c.undoSlot) any = true; });
    return any;
  }

  function renderUndoSlot(t) {
    var slot = t.undoSlot;
    if (!slot) return;
    slot.replaceChildren();
    var cp = S.checkpoints.get(t.callId);
    if (cp && cp.dropped) t.gone = true;
    if (t.undone) {
      slot.appendChild(h('span.undone-tag', {
        title: t.isRestore ? 'This restore was undone.' : 'The workspace was put back as it was before this command.'
      }, icon('check', 'tiny'), 'Undone'));
    } else if (t.gone) {
      slot.appendChild(h('span.checkpoint-gone', {
        text: 'Checkpoint dropped — can no longer be undone',
        title: 'Undo keeps a limited number of checkpoints per chat; the oldest are dropped.'
      }));
    } else {
      slot.appendChild(h('button.btn.small.undo-btn', {
        type: 'button', 'data-action': 'undo', 'data-call-id': t.callId,
        'aria-label': t.isRestore ? 'Undo this restore' : 'Undo the changes of this command and everything after it'
      }, h('span.spinner', { 'aria-hidden': 'true' }), icon('undo', 'tiny'), h('span.btn-label', { text: 'Undo' })));
      syncUndoButtons();
    }
  }

  /** Undo waits for the running turn (the server refuses it meanwhile). */
  function syncUndoButtons() {
    var busy = S.turnsOpen.size > 0;
    E.messages.querySelectorAll('[data-action="undo"]').forEach(function (b) {
      var loading = b.classList.contains('loading');
      b.disabled = busy || loading;
      b.title = busy ? 'Undo is possible once the current turn has finished' : loading ? 'Undoing…' : 'Put the workspace back as it was before this';
    });
  }

  function markGone(id) {
    var t = undoTarget(id);
    if (t && !t.gone) { t.gone = true; renderUndoSlot(t); }
  }

  function undoCall(id, btn) {
    var sid = S.sessionId;
    if (!sid || !id || btn.disabled) return;
    var restore = S.restores.get(id);
    var card = S.cards.get(id);
    var paths, title, what;
    if (restore) {
      paths = restore.paths;
      title = 'Undo this restore?';
      what = 'The workspace goes back to how it was just before the restore, bringing back what it undid.';
    } else {
      paths = (card && card.changes || []).map(function (c) { return c.path + (c.change ? ' (' + c.change + ')' : ''); });
      title = 'Undo this command?';
      what = 'The workspace goes back to how it was just before ' +
        (card && card.code ? '`' + shortCode(card.code) + '`' : 'this command') + ' ran.';
    }
    var shown = paths.slice(0, 8);
    var list = paths.length ? ' Paths that change back: ' + shown.join(', ') +
      (paths.length > shown.length ? ' and ' + (paths.length - shown.length) + ' more' : '') + '.' : '';
    var body = what + list + ' Changes made after it — by later commands or uploads — are undone too. You can undo the undo.';
    confirmDialog(title, body, 'Undo').then(function (ok) {
      if (!ok || sid !== S.sessionId) return;
      btn.classList.add('loading');
      syncUndoButtons();
      api('POST', sessionUrl(sid) + '/calls/' + enc(id) + '/revert').then(function (r) {
        var n = r && Array.isArray(r.paths) ? r.paths.length : 0;
        toast((restore ? 'Restore undone: ' : 'Undone: ') + plural(n, 'path', 'paths') + ' put back.', 'ok');
        markReverted(id);
        if (r && Array.isArray(r.paths)) r.paths.forEach(function (p) { S.filesChanged.add(p); });
        scheduleFilesRefresh();
        scheduleCheckpoints();
      }).catch(function (e) {
        if (e.status === 401) return;
        if (e.code === 'checkpoint_gone' || e.status === 410) markGone(id);
        toast('Could not undo: ' + e.message);
      }).then(function () {
        btn.classList.remove('loading');
        syncUndoButtons();
      });
    });
  }

  /** `id` was reverted: its card or notice says so, and undoing a restore
   *  brings back what that restore had undone. */
  function markReverted(id) {
    var t = undoTarget(id);
    if (t && !t.undone) { t.undone = true; renderUndoSlot(t); }
    var r = S.restores.get(id);
    var before = r && undoTarget(r.target);
    if (before && before.undone) { before.undone = false; renderUndoSlot(before); }
  }

  function onWorkspaceRestored(ev, live) {
    if (!ev.restore_id || S.restores.has(ev.restore_id)) return;
    var paths = Array.isArray(ev.paths) ? ev.paths : [];
    var card = S.cards.get(ev.call_id);
    var what;
    if (S.restores.has(ev.call_id)) what = 'the previous undo';
    else if (card && card.code) what = h('code', { text: shortCode(card.code), title: card.code });
    else what = 'an earlier command';
    var slot = h('span.undo-slot');
    var note = h('div.restore-notice', { role: 'note', 'data-call-id': ev.call_id || '', 'data-restore-id': ev.restore_id },
      icon('undo', 'tiny'),
      h('span.restore-text', { title: paths.join('\n') }, 'Workspace restored to before ', what, ': ' + plural(paths.length, 'path', 'paths')),
      h('span.spacer'),
      slot);
    var r = {
      callId: ev.restore_id, target: ev.call_id, paths: paths, el: note, undoSlot: slot,
      undone: false, gone: false, isRestore: true
    };
    markReverted(ev.call_id);
    S.restores.set(ev.restore_id, r);
    renderUndoSlot(r);
    appendMsg(note);
    if (live) {
      paths.forEach(function (p) { S.filesChanged.add(p); });
      scheduleFilesRefresh();
      scheduleCheckpoints();
      S.stick = true;
    }
  }

  var checkpointsTimer = null;
  /** Ask which checkpoints retention has dropped (debounced). */
  function scheduleCheckpoints(delay) {
    clearTimeout(checkpointsTimer);
    checkpointsTimer = setTimeout(loadCheckpoints, delay == null ? 500 : delay);
  }

  function loadCheckpoints() {
    var sid = S.sessionId;
    if (!sid || location.protocol === 'file:') return;
    api('GET', sessionUrl(sid) + '/checkpoints').then(function (list) {
      if (sid !== S.sessionId || !Array.isArray(list)) return;
      var map = new Map();
      list.forEach(function (c) { if (c && c.call_id) map.set(c.call_id, c); });
      S.checkpoints = map;
      var apply = function (t) {
        var cp = map.get(t.callId);
        if (t.undoSlot && cp && cp.dropped && !t.gone) { t.gone = true; renderUndoSlot(t); }
      };
      S.cards.forEach(apply);
      S.restores.forEach(apply);
    }).catch(function (e) {
      if (window.console && e.status !== 401) console.warn('IronClaw: could not list checkpoints', e);
    });
  }

  // ---------------------------------------------------------------- turn end, errors

  function onTurnDone(ev, live) {
    if (S.turnsDone.has(ev.turn_id)) return;
    S.turnsOpen.delete(ev.turn_id);
    S.turnsDone.add(ev.turn_id);
    finishStreams(ev.turn_id);
    // An approval still open when its turn ends can no longer be acted on.
    S.approvals.forEach(function (a, id) {
      if (a.card.turnId !== ev.turn_id) return;
      clearTimeout(a.retryTimer);
      a.resolved = true;
      a.box.classList.add('resolved');
      a.box.setAttribute('data-decision', 'cancelled');
      a.box.removeAttribute('role');
      a.box.replaceChildren(h('span.ap-outcome.timed_out', null, icon('ban'), 'Not answered — the turn ended, not run'));
      a.card.el.classList.remove('awaiting');
      S.approvals.delete(id);
    });
    S.cards.forEach(function (card) {
      if (card.turnId === ev.turn_id && !card.done) {
        card.done = true;
        card.state = 'done';
        setStatus(card, 'warn', ev.reason === 'cancelled' ? 'Stopped' : 'Not finished');
      }
    });
    if (ev.reason === 'cancelled') {
      appendMsg(h('div.turn-note', { role: 'note' }, icon('stop', 'tiny'), 'Stopped'));
    } else if (ev.reason === 'error') {
      appendMsg(h('div.turn-note.error', { role: 'note' }, icon('alert', 'tiny'), 'This turn ended with an error'));
    }
    if (!S.turnsOpen.size) S.stopping = false;
    if (live) refreshSessions();
  }

  function onError(ev, live) {
    var close = h('button.icon-btn.small', { type: 'button', 'aria-label': 'Dismiss this error', title: 'Dismiss' }, icon('x'));
    var card = h('div.msg-error', { role: live ? 'alert' : null, 'data-code': ev.code || '' },
      icon('alert'),
      h('div.err-body', null,
        h('div', null, h('span.err-title', { text: humanize(ev.code) }), h('span.err-code', { text: ev.code || '' })),
        h('p.err-msg', null, richText(ev.message || 'Something went wrong.'))),
      close);
    close.addEventListener('click', function () { card.remove(); updateEmpty(); });
    appendMsg(card);
    if (live) S.stick = true;
  }

  // ---------------------------------------------------------------- working state

  function updateWorking() {
    var working = S.turnsOpen.size > 0;
    var awaiting = hasPendingApproval();
    var running = false;
    S.cards.forEach(function (c) { if (!c.done && (c.state === 'running' || c.state === 'pending')) running = true; });
    E.composerForm.classList.toggle('busy', working);
    E.stop.hidden = !working;
    E.stop.disabled = S.stopping;
    E.typing.hidden = !working || awaiting || running || streamingActive();
    E.typingText.textContent = 'Thinking…';
    var ts = E.turnState;
    ts.replaceChildren();
    if (S.stopping && working) ts.append(h('span.spinner', { 'aria-hidden': 'true' }), 'Stopping…');
    else if (awaiting) ts.append(icon('shield', 'tiny'), 'Waiting for your approval');
    else if (working) ts.append(h('span.spinner', { 'aria-hidden': 'true' }), 'Working… new messages are queued');
    E.composer.placeholder = working ? 'Queue a follow-up…' : 'Message IronClaw…';
    syncUndoButtons();
  }

  function updateEmpty() {
    E.empty.hidden = E.messages.children.length > 0 || S.turnsOpen.size > 0;
  }

  function updateSendState() {
    E.send.classList.toggle('empty', !E.composer.value.trim());
  }

  function cancelTurn() {
    if (!wsSend({ type: 'cancel' })) { toast('Not connected to the server; cannot stop the turn right now.'); return; }
    S.stopping = true;
    updateWorking();
    // Stop disappears when the turn ends; the keyboard stays in the message box.
    focusComposer();
    // A turn the server no longer runs (say it restarted mid-turn) never
    // answers with turn_done: end it here so the page does not spin forever.
    var open = Array.from(S.turnsOpen);
    setTimeout(function () {
      if (!S.stopping) return;
      open.forEach(function (t) { if (S.turnsOpen.has(t)) onTurnDone({ turn_id: t, reason: 'cancelled' }, false); });
      S.stopping = false;
      updateWorking();
      updateEmpty();
    }, 8000);
  }

  // ---------------------------------------------------------------- countdowns

  var ticker = null;
  function tickCountdowns() {
    var pending = false;
    S.approvals.forEach(function (a) {
      if (a.resolved || a.sent) return;
      pending = true;
      if (a.expiresAt == null) { a.countdown.textContent = ''; return; }
      var left = Math.round((a.expiresAt - serverNow()) / 1000);
      if (left <= 0) { a.countdown.textContent = 'Expiring…'; return; }
      var m = Math.floor(left / 60), s = left % 60;
      a.countdown.textContent = 'Expires in ' + m + ':' + (s < 10 ? '0' : '') + s;
      a.countdown.classList.toggle('urgent', left <= 30);
    });
    renderConn();
    return pending;
  }

  // ---------------------------------------------------------------- scrolling

  function nearBottom() {
    var sc = E.scroller;
    return sc.scrollHeight - sc.scrollTop - sc.clientHeight < 80;
  }
  var lastAutoTop = 0;
  function scrollToBottom(force) {
    if (force) S.stick = true;
    if (!S.stick) return;
    E.scroller.scrollTop = E.scroller.scrollHeight;
    lastAutoTop = E.scroller.scrollTop;
    E.jump.hidden = true;
  }
  var stickFrame = 0;
  function scheduleStick() {
    if (stickFrame) return;
    stickFrame = requestAnimationFrame(function () {
      stickFrame = 0;
      if (S.stick) scrollToBottom(false);
      else E.jump.hidden = false;
    });
  }

  // ================================================================ composer

  function focusComposer() {
    E.composer.focus({ preventScroll: true });
  }

  // The message box grows with its text. Setting its height to `auto` to
  // read scrollHeight laid out the whole page on every key (110-150 ms next
  // to a long output); the text is measured on a hidden copy instead, once
  // per frame, and the box's height is only set when it changes.
  var COMPOSER_MAX = 260;
  var sizeFrame = 0, composerHeight = -1, composerWidth = 0, measurer = null;
  function autosize() {
    if (!sizeFrame) sizeFrame = requestAnimationFrame(fitComposer);
  }
  function fitComposer() {
    sizeFrame = 0;
    var ta = E.composer;
    if (!measurer) {
      measurer = h('textarea.composer-measure', { 'aria-hidden': 'true', tabindex: '-1', rows: '1' });
      document.body.appendChild(measurer);
      if (window.ResizeObserver) {
        new ResizeObserver(function () { composerWidth = ta.clientWidth; autosize(); }).observe(ta);
      }
    }
    var width = composerWidth || ta.clientWidth;
    if (measurer.style.width !== width + 'px') measurer.style.width = width + 'px';
    measurer.value = ta.value;
    var height = Math.min(measurer.scrollHeight, COMPOSER_MAX);
    if (height !== composerHeight) {
      composerHeight = height;
      ta.style.height = height + 'px';
    }
  }

  // ================================================================ files

  var filesRefreshTimer = null;
  function scheduleFilesRefresh() {
    clearTimeout(filesRefreshTimer);
    filesRefreshTimer = setTimeout(function () { loadFiles(S.filesDir); }, 250);
  }

  function loadFiles(dir) {
    if (!S.sessionId || location.protocol === 'file:') { renderFiles([], dir || ''); return Promise.resolve(); }
    var id = S.sessionId, gen = ++S.filesGen;
    dir = dir || '';
    E.fileList.setAttribute('aria-busy', 'true');
    return api('GET', sessionUrl(id) + '/files' + (dir ? '?path=' + enc(dir) : '')).then(function (list) {
      if (gen !== S.filesGen || id !== S.sessionId) return;
      S.filesDir = dir;
      renderFiles(Array.isArray(list) ? list : [], dir);
    }).catch(function (e) {
      if (gen !== S.filesGen) return;
      if (e.status === 401) return;
      if (dir && (e.status === 404 || e.status === 400)) { loadFiles(parentDir(dir)); return; }
      S.filesDir = dir;
      renderFiles(null, dir, e.message);
    }).then(function () { E.fileList.removeAttribute('aria-busy'); });
  }

  function parentDir(p) {
    var i = p.lastIndexOf('/');
    return i < 0 ? '' : p.slice(0, i);
  }

  function renderBreadcrumb(dir) {
    var bc = E.breadcrumb;
    bc.replaceChildren();
    var parts = dir ? dir.split('/').filter(Boolean) : [];
    var crumb = function (label, path, current) {
      var b = h('button.crumb', { type: 'button', text: label, title: '/workspace' + (path ? '/' + path : '') });
      if (current) b.setAttribute('aria-current', 'page');
      else b.addEventListener('click', function () { loadFiles(path); });
      return b;
    };
    bc.appendChild(crumb('workspace', '', parts.length === 0));
    var acc = '';
    parts.forEach(function (p, i) {
      acc = acc ? acc + '/' + p : p;
      bc.appendChild(h('span.crumb-sep', { 'aria-hidden': 'true', text: '/' }));
      bc.appendChild(crumb(p, acc, i === parts.length - 1));
    });
    E.dropTarget.textContent = '/workspace' + (dir ? '/' + dir : '');
  }

  function renderFiles(list, dir, errorMsg) {
    renderBreadcrumb(dir);
    var box = E.fileList;
    box.replaceChildren();
    if (errorMsg) {
      box.appendChild(h('div.files-empty', { role: 'listitem' }, icon('alert'), h('div', { text: 'Could not list files. ' + errorMsg })));
      return;
    }
    if (!list || !list.length) {
      S.fileNames = [];
      box.appendChild(h('div.files-empty', { role: 'listitem' }, icon('folder'),
        h('div', { text: dir ? 'This folder is empty.' : 'No files yet. Upload files or drop them on the chat; the agent sees them in /workspace.' })));
      return;
    }
    S.fileNames = list.map(function (f) { return String(f.name); });
    list = list.slice().sort(function (a, b) {
      if (a.kind !== b.kind) return a.kind === 'dir' ? -1 : 1;
      return String(a.name).localeCompare(String(b.name), undefined, { numeric: true, sensitivity: 'base' });
    });
    list.forEach(function (f) {
      var path = f.path || (dir ? dir + '/' + f.name : f.name);
      var isDir = f.kind === 'dir';
      var nameEl, actions = [];
      if (isDir) {
        nameEl = h('button.f-name', { type: 'button', text: f.name, title: 'Open folder ' + f.name });
        nameEl.addEventListener('click', function () { loadFiles(path); });
      } else {
        var url = fileUrl(S.sessionId, path);
        nameEl = h('a.f-name', { href: url, download: f.name, text: f.name, title: 'Download ' + f.name });
        actions.push(h('a.icon-btn.small', { href: url, download: f.name, 'aria-label': 'Download ' + f.name, title: 'Download' }, icon('download')));
      }
      var del = h('button.icon-btn.small.danger', { type: 'button', 'aria-label': 'Delete ' + f.name, title: 'Delete', 'data-action': 'delete-file' }, icon('trash'));
      del.addEventListener('click', function () { deleteFile(path, f.name, isDir); });
      actions.push(del);
      var meta = isDir ? 'Folder' : fmtSize(f.size);
      var row = h('div.file-row' + (isDir ? '.dir' : ''), { role: 'listitem', 'data-path': path, 'data-kind': isDir ? 'dir' : 'file' },
        icon(isDir ? 'folder' : 'file', 'f-icon'),
        h('div.file-main', null, nameEl,
          h('span.f-meta', { title: fullTime(f.modified) }, meta, f.modified ? ' · ' : '',
            f.modified ? h('span', { 'data-time': f.modified, text: relTime(f.modified) }) : null)),
        h('div.f-actions', null, actions));
      if (S.filesChanged.has(path)) row.classList.add('changed');
      box.appendChild(row);
    });
    S.filesChanged.clear();
  }

  function deleteFile(path, name, isDir) {
    var id = S.sessionId;
    confirmDialog('Delete ' + (isDir ? 'folder' : 'file') + ' “' + name + '”?',
      isDir ? 'Only empty folders can be deleted. The agent will no longer see it in /workspace/' + path + '.'
        : 'It is removed from the workspace for good. The agent will no longer see /workspace/' + path + '.',
      'Delete').then(function (ok) {
      if (!ok || id !== S.sessionId) return;
      api('DELETE', fileUrl(id, path)).then(function () {
        loadFiles(S.filesDir);
      }).catch(function (e) {
        if (e.status !== 401) toast('Could not delete ' + name + ': ' + e.message);
        loadFiles(S.filesDir);
      });
    });
  }

  function revealFile(path) {
    setFilesOpen(true);
    S.filesChanged.add(path);
    loadFiles(parentDir(path)).then(function () {
      var row = E.fileList.querySelector('.file-row[data-path="' + cssEscape(path) + '"]');
      if (row) { row.scrollIntoView({ block: 'nearest' }); var a = row.querySelector('.f-name'); if (a) a.focus(); }
      else toast('“' + path + '” is no longer in the workspace.', 'error', 4000);
    });
  }

  function cssEscape(s) {
    if (window.CSS && CSS.escape) return CSS.escape(s);
    return String(s).replace(/["\\]/g, '\\$&');
  }

  var narrowFiles = window.matchMedia ? window.matchMedia('(max-width: 1100px)') : { matches: false };

  function setFilesOpen(open, remember) {
    S.filesOpen = open;
    E.app.classList.toggle('files-closed', !open);
    E.filesToggle.setAttribute('aria-expanded', open ? 'true' : 'false');
    E.filesToggle.setAttribute('aria-label', open ? 'Hide files' : 'Show files');
    if (remember && !narrowFiles.matches) { try { localStorage.setItem('ironclaw.files', open ? 'open' : 'closed'); } catch (e) { /* ignore */ } }
    syncBackdrop();
  }

  function filesPreference() {
    var pref = null;
    try { pref = localStorage.getItem('ironclaw.files'); } catch (e) { /* ignore */ }
    return narrowFiles.matches ? false : pref !== 'closed';
  }

  function syncBackdrop() {
    var overlay = E.app.classList.contains('sidebar-open') || (S.filesOpen && narrowFiles.matches);
    E.backdrop.hidden = !overlay;
  }

  // ---------------------------------------------------------------- uploads

  function uploadFiles(files) {
    files = Array.prototype.slice.call(files || []);
    if (!files.length) return;
    if (!S.sessionId) { toast('Open a chat before uploading files.'); return; }
    setFilesOpen(true);
    var dir = S.filesDir, sid = S.sessionId;
    // An upload overwrites a file of the same name (the API's PUT/POST
    // semantics), so the page asks first, one file at a time.
    existingNames(sid, dir).then(function (taken) {
      return files.reduce(function (prev, file) {
        return prev.then(function () {
          if (sid !== S.sessionId) return null;
          if (!taken.has(file.name)) { taken.add(file.name); queueUpload(file, file.name, dir, sid); return null; }
          var where = '/workspace' + (dir ? '/' + dir : '');
          return choiceDialog('Replace “' + file.name + '”?',
            'A file named “' + file.name + '” is already in ' + where + '. Replace it with the one you are uploading, or keep both (the upload gets a new name)?',
            [{ value: 'cancel', label: 'Cancel' }, { value: 'keep', label: 'Keep both', focus: true }, { value: 'replace', label: 'Replace', cls: 'danger' }]
          ).then(function (choice) {
            if (sid !== S.sessionId) return;
            if (choice === 'replace') queueUpload(file, file.name, dir, sid);
            else if (choice === 'keep') {
              var name = freeName(file.name, taken);
              taken.add(name);
              queueUpload(file, name, dir, sid);
            }
          });
        });
      }, Promise.resolve());
    });
  }

  /** Names in a workspace folder, fresh from the server (else as last listed). */
  function existingNames(sid, dir) {
    return api('GET', sessionUrl(sid) + '/files' + (dir ? '?path=' + enc(dir) : '')).then(function (list) {
      return new Set((Array.isArray(list) ? list : []).map(function (f) { return String(f.name); }));
    }).catch(function () {
      return new Set(dir === S.filesDir ? S.fileNames || [] : []);
    });
  }

  /** `name (1).ext`, `name (2).ext`…: the first not in `taken`. */
  function freeName(name, taken) {
    var m = /^(.+?)((?:\.tar)?\.[^.\s]+)$/i.exec(name);
    var stem = m ? m[1] : name, ext = m ? m[2] : '';
    for (var n = 1; ; n++) {
      var candidate = stem + ' (' + n + ')' + ext;
      if (!taken.has(candidate)) return candidate;
    }
  }

  function queueUpload(file, name, dir, sid) {
    var progress = h('progress', { max: '100', value: '0', 'aria-label': 'Upload progress for ' + name });
    var state = h('span.u-state', { text: 'Waiting…' });
    var item = h('div.upload-item', null, h('span.u-name', { text: name, title: name }), state, progress);
    E.uploads.appendChild(item);
    S.uploadQueue.push({ file: file, name: name, dir: dir, sid: sid, item: item, progress: progress, state: state });
    pumpUploads();
  }

  function pumpUploads() {
    while (S.uploadsActive < 2 && S.uploadQueue.length) startUpload(S.uploadQueue.shift());
  }

  function startUpload(u) {
    S.uploadsActive++;
    var xhr = new XMLHttpRequest();
    var fd = new FormData();
    if (u.dir) fd.append('dir', u.dir);
    fd.append('file', u.file, u.name);
    xhr.open('POST', sessionUrl(u.sid) + '/files');
    xhr.withCredentials = true;
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.onprogress = function (e) {
      if (!e.lengthComputable) return;
      var pct = Math.min(100, Math.round(e.loaded / e.total * 100));
      u.progress.value = pct;
      u.state.textContent = pct < 100 ? pct + '% of ' + fmtSize(e.total) : 'Saving…';
    };
    var finish = function (ok, msg) {
      S.uploadsActive--;
      u.item.classList.add(ok ? 'done' : 'failed');
      if (ok) {
        u.progress.value = 100;
        u.state.textContent = 'Uploaded';
        setTimeout(function () { u.item.remove(); }, 3500);
        if (u.sid === S.sessionId) {
          S.filesChanged.add(u.dir ? u.dir + '/' + u.name : u.name);
          scheduleFilesRefresh();
        }
      } else {
        u.state.textContent = 'Failed';
        var close = h('button.icon-btn.small', { type: 'button', 'aria-label': 'Dismiss' }, icon('x', 'tiny'));
        close.addEventListener('click', function () { u.item.remove(); });
        u.item.appendChild(h('span.u-error', { role: 'alert', text: msg }));
        u.state.replaceChildren('Failed ', close);
      }
      pumpUploads();
    };
    xhr.onload = function () {
      if (xhr.status === 401) { goLogin(); finish(false, 'Signed out.'); return; }
      if (xhr.status >= 200 && xhr.status < 300) { finish(true); return; }
      var msg = null;
      try { var b = JSON.parse(xhr.responseText); msg = b && b.error && b.error.message; } catch (e) { /* not JSON */ }
      if (!msg && xhr.status === 413) msg = 'The file is too big for the server’s upload limit.';
      finish(false, msg || ('Upload failed (' + xhr.status + ').'));
    };
    xhr.onerror = function () { finish(false, 'Network error: the upload did not reach the server.'); };
    xhr.onabort = function () { finish(false, 'Upload cancelled.'); };
    xhr.send(fd);
  }

  function setupDragDrop() {
    var depth = 0;
    var hasFiles = function (e) {
      var t = e.dataTransfer && e.dataTransfer.types;
      return !!t && Array.prototype.indexOf.call(t, 'Files') >= 0;
    };
    window.addEventListener('dragenter', function (e) {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth++;
      E.dropOverlay.hidden = false;
    });
    window.addEventListener('dragover', function (e) {
      if (!hasFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = S.sessionId ? 'copy' : 'none';
    });
    window.addEventListener('dragleave', function (e) {
      if (!hasFiles(e)) return;
      depth = Math.max(0, depth - 1);
      if (!depth) E.dropOverlay.hidden = true;
    });
    window.addEventListener('drop', function (e) {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth = 0;
      E.dropOverlay.hidden = true;
      uploadFiles(e.dataTransfer.files);
    });
  }

  // ================================================================ logs and audit

  function clearLogs() {
    E.logList.replaceChildren(h('p.log-empty.muted', { text: 'No log entries yet.' }));
  }

  function addLog(ev, live) {
    var level = ev.level === 'error' || ev.level === 'warn' ? ev.level : 'info';
    var stamp = ev.ts || ev.time || ev.timestamp || ev.at || ev.created_at;
    var t = stamp ? parseTime(stamp) : (live ? Date.now() : null);
    var list = E.logList;
    var empty = list.querySelector('.log-empty');
    if (empty) empty.remove();
    var atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 30;
    list.appendChild(h('div.log-row.' + level, null,
      h('span.l-time', { text: t != null ? clockTime(t) : '—', title: t != null ? new Date(t).toLocaleString() : 'Time not recorded' }),
      h('span.l-level', { text: level }),
      h('span.l-source', { text: ev.source || '' }),
      h('span.l-msg', { text: ev.message || '' })));
    while (list.children.length > 2000) list.removeChild(list.firstChild);
    if (atBottom && !E.logPanel.hidden) list.scrollTop = list.scrollHeight;
    if (live && level !== 'info' && E.logPanel.hidden) {
      S.logUnseen++;
      if (level === 'error') S.logUnseenError = true;
      updateLogBadge();
    }
  }

  function updateLogBadge() {
    var b = E.logBadge;
    b.hidden = S.logUnseen === 0;
    b.textContent = S.logUnseen > 99 ? '99+' : String(S.logUnseen);
    b.classList.toggle('warn', !S.logUnseenError);
    E.logToggle.setAttribute('aria-label', (E.logPanel.hidden ? 'Show logs' : 'Hide logs') +
      (S.logUnseen ? ' (' + S.logUnseen + ' new warning' + (S.logUnseen === 1 ? '' : 's') + ')' : ''));
  }

  function scrollLogToBottom() { E.logList.scrollTop = E.logList.scrollHeight; }

  function setLogOpen(open) {
    E.logPanel.hidden = !open;
    E.logToggle.setAttribute('aria-expanded', open ? 'true' : 'false');
    if (open) {
      S.logUnseen = 0;
      S.logUnseenError = false;
      scrollLogToBottom();
      if (S.logTab === 'audit') loadAudit();
    }
    updateLogBadge();
  }

  function setLogTab(tab) {
    S.logTab = tab;
    var logs = tab === 'logs';
    E.tabLogs.classList.toggle('active', logs);
    E.tabAudit.classList.toggle('active', !logs);
    E.tabLogs.setAttribute('aria-selected', logs ? 'true' : 'false');
    E.tabAudit.setAttribute('aria-selected', logs ? 'false' : 'true');
    E.tabLogs.tabIndex = logs ? 0 : -1;
    E.tabAudit.tabIndex = logs ? -1 : 0;
    E.logList.hidden = !logs;
    E.auditView.hidden = logs;
    E.logFilter.hidden = !logs;
    if (!logs) loadAudit();
  }

  function loadAudit() {
    var view = E.auditView, id = S.sessionId;
    if (!id || location.protocol === 'file:') { view.replaceChildren(h('p.audit-msg', { text: 'No chat open.' })); return; }
    view.replaceChildren(h('p.audit-msg', { text: 'Loading the audit trail…' }));
    api('GET', sessionUrl(id) + '/audit').then(function (rows) {
      if (id !== S.sessionId) return;
      rows = Array.isArray(rows) ? rows : [];
      if (!rows.length) { view.replaceChildren(h('p.audit-msg', { text: 'No tool calls in this chat yet.' })); return; }
      var decisionText = { approved: 'approved', denied: 'denied', timed_out: 'timed out' };
      var tbody = h('tbody');
      rows.forEach(function (r) {
        var risk = (r.risk && r.risk.level) || 'high';
        tbody.appendChild(h('tr', null,
          h('td', { text: fullTime(r.created_at) }),
          h('td', { text: r.tool }),
          h('td.code', { text: r.code, title: (r.risk && r.risk.reasons || []).join('\n') }),
          h('td', null, h('span.risk-pill.risk-' + risk, { text: risk })),
          h('td', { text: r.approval_mode || '' }),
          h('td', { class: r.decision ? 'd-' + r.decision : '', text: r.decision ? decisionText[r.decision] || r.decision : 'pending' }),
          h('td', { text: r.decided_by ? r.decided_by + (r.decided_at ? ' · ' + fullTime(r.decided_at) : '') : '—' }),
          h('td', { text: r.exit_code == null ? '—' : String(r.exit_code) })));
      });
      view.replaceChildren(h('table.audit-table', null,
        h('thead', null, h('tr', null, ['When', 'Tool', 'Code', 'Risk', 'Mode', 'Decision', 'Decided by', 'Exit'].map(function (t) {
          return h('th', { scope: 'col', text: t });
        }))), tbody));
    }).catch(function (e) {
      if (e.status !== 401 && id === S.sessionId) view.replaceChildren(h('p.audit-msg', { text: 'Could not load the audit trail: ' + e.message }));
    });
  }

  // ================================================================ me, logout

  function setMe(name) {
    S.me = name;
    E.meName.textContent = name;
    E.meAvatar.textContent = (name || '?').charAt(0);
    E.meName.parentNode.title = 'Signed in as ' + name;
  }

  function logout() {
    api('POST', '/api/logout').catch(function () { /* go anyway */ }).then(function () {
      closeSocket();
      location.href = '/login';
    });
  }

  // ================================================================ init

  function bind() {
    E.app = $('#app');
    E.sidebar = $('#sidebar');
    E.backdrop = $('#sidebar-backdrop');
    E.sidebarOpen = $('#sidebar-open');
    E.sessionList = $('#session-list');
    E.newSession = $('#new-session');
    E.meName = $('#me-name');
    E.meAvatar = $('#me-avatar');
    E.themeToggle = $('#theme-toggle');
    E.titleBtn = $('#session-title');
    E.titleText = $('#session-title-text');
    E.titleInput = $('#session-title-input');
    E.modelPicker = $('#model-picker');
    E.settingsToggle = $('#settings-toggle');
    E.chatSettings = $('#chat-settings');
    E.choice = $('#choice-dialog');
    E.modeGroup = $('#approval-mode');
    E.modeRadios = Array.prototype.slice.call(document.querySelectorAll('input[name="approval_mode"]'));
    E.statusLine = $('#status-line');
    E.statusText = $('#status-text');
    E.statusPopover = $('#status-popover');
    E.logToggle = $('#log-toggle');
    E.logBadge = $('#log-badge');
    E.filesToggle = $('#files-toggle');
    E.connBanner = $('#conn-banner');
    E.connText = $('#conn-text');
    E.connRetry = $('#conn-retry');
    E.providerBanner = $('#provider-banner');
    E.providerText = $('#provider-text');
    E.scroller = $('#scroller');
    E.empty = $('#empty-state');
    E.messages = $('#messages');
    E.typing = $('#typing');
    E.typingText = $('#typing-text');
    E.jump = $('#jump-latest');
    E.composerForm = $('#composer-form');
    E.composer = $('#composer');
    E.send = $('#send');
    E.stop = $('#stop');
    E.turnState = $('#turn-state');
    E.logPanel = $('#log-panel');
    E.logList = $('#log-list');
    E.logFilter = $('#log-filter');
    E.auditView = $('#audit-view');
    E.tabLogs = $('#tab-logs');
    E.tabAudit = $('#tab-audit');
    E.breadcrumb = $('#breadcrumb');
    E.fileList = $('#file-list');
    E.uploads = $('#uploads');
    E.fileInput = $('#file-input');
    E.dropOverlay = $('#drop-overlay');
    E.dropTarget = $('#drop-target');
    E.confirm = $('#confirm-dialog');
    E.toasts = $('#toasts');

    // Sidebar
    E.newSession.addEventListener('click', newSession);
    E.sidebarOpen.addEventListener('click', openSidebar);
    $('#sidebar-close').addEventListener('click', closeSidebar);
    E.backdrop.addEventListener('click', function () {
      closeSidebar();
      if (S.filesOpen && narrowFiles.matches) setFilesOpen(false);
    });
    E.themeToggle.addEventListener('click', toggleTheme);
    $('#logout').addEventListener('click', logout);
    updateThemeButton();
    if (window.matchMedia) {
      var mq = window.matchMedia('(prefers-color-scheme: light)');
      if (mq.addEventListener) mq.addEventListener('change', updateThemeButton);
    }

    // Header
    E.titleBtn.addEventListener('click', startRename);
    E.titleInput.addEventListener('keydown', function (e) {
      if (e.key === 'Enter') { e.preventDefault(); endRename(true); }
      else if (e.key === 'Escape') { e.preventDefault(); endRename(false); }
    });
    E.titleInput.addEventListener('blur', function () { endRename(true); });
    E.modelPicker.addEventListener('change', onModelChange);
    E.modeRadios.forEach(function (r) { r.addEventListener('change', onModeChange); });
    E.statusLine.addEventListener('click', function (e) { e.stopPropagation(); toggleStatusPopover(); });
    E.settingsToggle.addEventListener('click', function (e) { e.stopPropagation(); setSettingsOpen(!settingsOpen()); });
    document.addEventListener('click', function (e) {
      if (!E.statusPopover.hidden && !E.statusPopover.contains(e.target)) toggleStatusPopover(false);
      if (settingsOpen() && !E.chatSettings.contains(e.target) && !(E.confirm && E.confirm.open)) setSettingsOpen(false);
    });
    E.sessionList.addEventListener('keydown', onSessionListKey);
    E.logToggle.addEventListener('click', function () { setLogOpen(E.logPanel.hidden); });
    $('#log-close').addEventListener('click', function () { setLogOpen(false); E.logToggle.focus(); });
    E.filesToggle.addEventListener('click', function () { setFilesOpen(!S.filesOpen, true); });
    $('#files-close').addEventListener('click', function () { setFilesOpen(false, true); E.filesToggle.focus(); });
    E.connRetry.addEventListener('click', function () { S.wsAttempts = 0; reconnectNow(); });
    $('#provider-dismiss').addEventListener('click', function () {
      S.providerBannerDismissed = E.statusLine.title;
      E.providerBanner.hidden = true;
    });

    // Logs
    E.tabLogs.addEventListener('click', function () { setLogTab('logs'); });
    E.tabAudit.addEventListener('click', function () { setLogTab('audit'); });
    [E.tabLogs, E.tabAudit].forEach(function (t) {
      t.addEventListener('keydown', function (e) {
        if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
          e.preventDefault();
          var next = S.logTab === 'logs' ? 'audit' : 'logs';
          setLogTab(next);
          (next === 'logs' ? E.tabLogs : E.tabAudit).focus();
        }
      });
    });
    E.logFilter.addEventListener('change', function () {
      E.logList.classList.remove('filter-warn', 'filter-error');
      if (E.logFilter.value !== 'all') E.logList.classList.add('filter-' + E.logFilter.value);
    });

    // Conversation
    E.scroller.addEventListener('scroll', function () {
      // Only a scroll up by the person unsticks; content growing below a
      // programmatic scroll does not.
      if (nearBottom()) { S.stick = true; E.jump.hidden = true; }
      else if (E.scroller.scrollTop < lastAutoTop - 4) S.stick = false;
      lastAutoTop = Math.min(lastAutoTop, E.scroller.scrollTop);
    }, { passive: true });
    E.jump.addEventListener('click', function () { scrollToBottom(true); E.composer.focus(); });
    E.messages.addEventListener('click', function (e) {
      var btn = e.target.closest('button');
      if (!btn) return;
      var action = btn.getAttribute('data-action');
      if (action === 'approve' || action === 'deny' || action === 'approve-session') { decide(btn); return; }
      if (action === 'undo') { undoCall(btn.getAttribute('data-call-id'), btn); return; }
      if (btn.classList.contains('file-link')) { revealFile(btn.getAttribute('data-path')); }
    });
    document.addEventListener('click', function (e) {
      var btn = e.target.closest && e.target.closest('.copy-btn');
      if (!btn) return;
      var block = btn.closest('.code-block');
      var code = block && block.querySelector('code');
      if (!code) return;
      copyText(code.textContent).then(function () {
        btn.textContent = 'Copied';
        btn.classList.add('copied');
        setTimeout(function () { btn.textContent = 'Copy'; btn.classList.remove('copied'); }, 1500);
      }).catch(function () { toast('Could not copy to the clipboard.'); });
    });
    document.querySelectorAll('.suggestion').forEach(function (b) {
      b.addEventListener('click', function () {
        E.composer.value = b.getAttribute('data-prompt');
        autosize();
        updateSendState();
        E.composer.focus();
      });
    });

    // Composer
    E.composerForm.addEventListener('submit', function (e) { e.preventDefault(); sendMessage(); });
    E.composer.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' && !e.shiftKey && !e.altKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        sendMessage();
      }
    });
    E.composer.addEventListener('input', function () { autosize(); updateSendState(); });
    E.stop.addEventListener('click', cancelTurn);

    // Files
    $('#upload-btn').addEventListener('click', function () { E.fileInput.click(); });
    $('#attach').addEventListener('click', function () { E.fileInput.click(); });
    $('#files-refresh').addEventListener('click', function () { loadFiles(S.filesDir); });
    E.fileInput.addEventListener('change', function () {
      uploadFiles(E.fileInput.files);
      E.fileInput.value = '';
    });
    setupDragDrop();

    // Keyboard
    // Escape closes the innermost open thing: a popover or menu, then a
    // sliding panel, then the log panel. Dialogs and the title editor
    // handle their own Escape.
    document.addEventListener('keydown', function (e) {
      if (e.key !== 'Escape' || e.defaultPrevented) return;
      if ((E.confirm && E.confirm.open) || (E.choice && E.choice.open)) return;
      if (!E.statusPopover.hidden) { toggleStatusPopover(false); E.statusLine.focus(); return; }
      if (settingsOpen()) { setSettingsOpen(false); E.settingsToggle.focus(); return; }
      if (E.app.classList.contains('sidebar-open')) { closeSidebar(); E.sidebarOpen.focus(); return; }
      if (S.filesOpen && narrowFiles.matches) { setFilesOpen(false); E.filesToggle.focus(); return; }
      if (!E.logPanel.hidden) { setLogOpen(false); E.logToggle.focus(); }
    });

    // Files panel: open by default on wide screens (remembered), an overlay
    // that starts closed on narrow ones.
    setFilesOpen(filesPreference());
    if (narrowFiles.addEventListener) narrowFiles.addEventListener('change', function () { setFilesOpen(filesPreference()); closeSidebar(); });

    setInterval(function () {
      tickCountdowns();
      updateDocTitle();
    }, 1000);
    setInterval(updateRelativeTimes, 60000);
  }

  function start() {
    renderHeader();
    renderFiles([], '');
    updateWorking();
    updateEmpty();
    updateSendState();
    renderSessions();

    if (location.protocol === 'file:') {
      // Opened from disk (design preview): no server to talk to.
      renderStatus('offline');
      return;
    }

    api('GET', '/api/me').then(function (me) {
      setMe(me && me.username || '');
      refreshHealth();
      setInterval(refreshHealth, 30000);
      loadModels();
      return refreshSessions().then(function (list) {
        var want = new URLSearchParams(location.search).get('session');
        var id = null;
        if (want && list.some(function (x) { return x.id === want; })) id = want;
        else {
          if (want) toast('That chat was not found. Opened your latest chat instead.', 'error', 5000);
          id = list.length ? list[0].id : null;
        }
        if (id) switchSession(id);
        else { S.connLostAt = Date.now(); connect(); }
      });
    }).catch(function (e) {
      if (e.status === 401) return;
      renderStatus('offline');
      toast(e.message + ' Retrying…', 'error', 5000);
      setTimeout(start, 5000);
    });
  }

  function boot() {
    bind();
    // Signed in (or back): ready to type.
    if (!document.activeElement || document.activeElement === document.body) focusComposer();
    start();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();

  // Exposed for debugging and browser tests; not needed by the page.
  window.IronClaw = { state: S, renderEvent: function (ev) { renderEvent(ev, { live: true }); } };
})();
