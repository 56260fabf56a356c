/* IronClaw — sign-in page. */
(function () {
  'use strict';

  var form = document.getElementById('login-form');
  var user = document.getElementById('login-username');
  var pass = document.getElementById('login-password');
  var submit = document.getElementById('login-submit');
  var errorBox = document.getElementById('login-error');
  var toggle = document.getElementById('toggle-password');

  /**
   * Where to go after signing in: a path of this origin only, judged after
   * the browser's own URL parsing (which drops tabs and newlines, so
   * `/%09/example.com/` would otherwise become `//example.com/`).
   */
  function nextUrl() {
    var next = new URLSearchParams(location.search).get('next');
    if (!next) return '/';
    var url;
    try { url = new URL(next, location.origin); } catch (err) { return '/'; }
    if (url.origin !== location.origin || url.pathname.indexOf('/login') === 0) return '/';
    return url.pathname + url.search + url.hash;
  }

  function showError(msg) {
    errorBox.textContent = msg;
    errorBox.hidden = false;
  }

  function busy(on) {
    submit.disabled = on;
    submit.classList.toggle('loading', on);
    submit.setAttribute('aria-busy', on ? 'true' : 'false');
  }

  toggle.addEventListener('click', function () {
    var show = pass.type === 'password';
    pass.type = show ? 'text' : 'password';
    toggle.setAttribute('aria-pressed', show ? 'true' : 'false');
    toggle.setAttribute('aria-label', show ? 'Hide password' : 'Show password');
    toggle.title = show ? 'Hide password' : 'Show password';
    pass.focus();
  });

  [user, pass].forEach(function (input) {
    input.addEventListener('input', function () { errorBox.hidden = true; input.removeAttribute('aria-invalid'); });
  });

  form.addEventListener('submit', function (e) {
    e.preventDefault();
    errorBox.hidden = true;
    var username = user.value.trim();
    var password = pass.value;
    if (!username) { showError('Enter your username.'); user.setAttribute('aria-invalid', 'true'); user.focus(); return; }
    if (!password) { showError('Enter your password.'); pass.setAttribute('aria-invalid', 'true'); pass.focus(); return; }
    busy(true);
    fetch('/api/login', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ username: username, password: password })
    }).then(function (res) {
      if (res.ok) { location.replace(nextUrl()); return null; }
      return res.text().then(function (text) {
        var msg = null;
        try { var body = JSON.parse(text); msg = body && body.error && body.error.message; } catch (err) { /* not JSON */ }
        if (res.status === 401) {
          showError(msg || 'Wrong username or password.');
          pass.value = '';
          pass.setAttribute('aria-invalid', 'true');
          pass.focus();
        } else if (res.status === 429) {
          var wait = res.headers.get('Retry-After');
          showError(msg || ('Too many sign-in attempts. Try again' + (wait ? ' in ' + wait + ' seconds.' : ' later.')));
        } else {
          showError(msg || ('Sign-in failed (' + res.status + '). Try again.'));
        }
      });
    }).catch(function () {
      showError('Cannot reach the IronClaw server. Check that it is running and try again.');
    }).then(function () { busy(false); });
  });
})();
