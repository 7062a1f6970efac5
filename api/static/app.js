// coachpay pages: the one script every page loads. No inline handlers: the elements
// say what they do in data-* attributes, this file wires them up.
//
// Every call goes to the /v1 JSON API with the session cookie and the CSRF header
// (the value of the coachpay_csrf cookie, sent always), JSON bodies only.
(function () {
  "use strict";

  function cookie(name) {
    const found = document.cookie.split(";").map((c) => c.trim())
      .find((c) => c.startsWith(name + "="));
    return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
  }

  function newKey() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    return "k" + Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.detail) || "request failed (" + status + ")");
      this.status = status;
      this.body = body;
    }
  }

  async function api(method, url, body, extraHeaders) {
    const headers = Object.assign({
      "Accept": "application/json",
      "Content-Type": "application/json",
      "X-CSRF-Token": cookie("coachpay_csrf"),
    }, extraHeaders || {});
    const init = { method: method, credentials: "same-origin", headers: headers };
    if (method !== "GET" && method !== "HEAD") {
      init.body = JSON.stringify(body === undefined ? {} : body);
    }
    const r = await fetch(url, init);
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) { throw new ApiError(r.status, data); }
    return data;
  }

  // "12.50" in a currency of exponent 2 -> 1250; null when it is not such an amount.
  function toMinor(text, exp) {
    const t = String(text).trim().replace(/,/g, "");
    const re = exp > 0 ? new RegExp("^(\\d+)(?:\\.(\\d{1," + exp + "}))?$") : /^(\d+)$/;
    const m = t.match(re);
    if (!m) { return null; }
    const frac = (m[2] || "").padEnd(exp, "0");
    const n = Number(m[1]) * Math.pow(10, exp) + (frac ? Number(frac) : 0);
    return Number.isSafeInteger(n) ? n : null;
  }

  function say(el, text, kind) {
    const box = (el && el.closest("[data-messages]")) || document.getElementById("flash");
    if (!box) { return; }
    const target = box.matches("[data-messages]") ? box.querySelector(".message") || box : box;
    target.textContent = text;
    target.className = "message " + (kind || "bad");
    target.hidden = false;
  }

  function busy(el, on) {
    if (!el) { return; }
    el.disabled = on;
    el.setAttribute("aria-busy", on ? "true" : "false");
  }

  // -- local times: <time datetime="...Z"> shown in the viewer's time zone ---------------
  function localTimes(root) {
    const fmt = new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", timeZoneName: "short",
    });
    root.querySelectorAll("time[datetime]").forEach((t) => {
      const when = new Date(t.getAttribute("datetime"));
      if (!isNaN(when.getTime())) {
        t.title = t.textContent.trim();
        t.textContent = fmt.format(when);
        t.dataset.local = "1";
      }
    });
  }

  // -- buttons that POST to the API: data-post="/v1/..." data-then="checkout|reload|go:URL"
  async function postButton(btn) {
    if (btn.dataset.confirm && !window.confirm(btn.dataset.confirm)) { return; }
    busy(btn, true);
    try {
      const data = await api("POST", btn.dataset.post, {});
      const then = btn.dataset.then || "reload";
      if (then === "checkout") {
        if (data && data.checkout_url) { window.location.assign(data.checkout_url); return; }
        say(btn, "Stripe gave no checkout page for this booking.");
      } else if (then.startsWith("go:")) {
        window.location.assign(then.slice(3).replace("{id}", String(data && data.id)));
        return;
      } else if (then === "onboarding") {
        window.location.assign(data.url);
        return;
      } else {
        window.location.reload();
        return;
      }
    } catch (e) {
      say(btn, e.message);
    }
    busy(btn, false);
  }

  async function dashboardButton(btn) {
    busy(btn, true);
    try {
      const account = await api("GET", "/v1/coaches/me/account");
      if (account.dashboard_url) { window.location.assign(account.dashboard_url); return; }
      say(btn, "Stripe did not give a dashboard link; try again in a moment.");
    } catch (e) {
      say(btn, e.message);
    }
    busy(btn, false);
  }

  // -- the refund form on a booking page ------------------------------------------------
  function refundForm(form) {
    const key = newKey(); // one per page view: a double submit replays, never refunds twice
    const exp = Number(form.dataset.exponent);
    const remaining = Number(form.dataset.remaining);
    const amount = form.querySelector("[name=amount]");
    const whole = form.querySelector("[name=whole]");
    const sync = () => { amount.disabled = whole.checked; };
    whole.addEventListener("change", sync);
    sync();
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = {};
      if (!whole.checked) {
        const minor = toMinor(amount.value, exp);
        if (minor === null || minor <= 0) {
          say(form, "Enter an amount like " + (exp ? "12." + "5".padEnd(exp, "0") : "1200") + ".");
          return;
        }
        if (minor > remaining) { say(form, "That is more than can still be refunded."); return; }
        body.amount = minor;
      }
      const reason = form.querySelector("[name=reason]");
      if (reason && reason.value.trim()) { body.reason = reason.value.trim(); }
      const submit = form.querySelector("[type=submit]");
      busy(submit, true);
      try {
        await api("POST", form.dataset.url, body, { "Idempotency-Key": "page-" + key });
        window.location.reload();
      } catch (e) {
        say(form, e.message);
        busy(submit, false);
      }
    });
  }

  // -- the coach's "publish a session" form ------------------------------------------------
  function publishForm(form) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = form.elements;
      const currency = f.currency.value;
      const exp = Number(f.currency.selectedOptions[0].dataset.exponent);
      const price = toMinor(f.price.value, exp);
      const start = new Date(f.starts_at.value); // datetime-local: the viewer's own time
      const minutes = Number(f.duration.value);
      if (price === null || price <= 0) { say(form, "Price: a positive amount in " + currency.toUpperCase() + "."); return; }
      if (isNaN(start.getTime())) { say(form, "Pick the date and time the session starts."); return; }
      if (!Number.isInteger(minutes) || minutes < 1) { say(form, "Duration: whole minutes."); return; }
      const body = {
        title: f.title.value,
        description: f.description.value,
        starts_at: start.toISOString(),
        ends_at: new Date(start.getTime() + minutes * 60000).toISOString(),
        price: price,
        currency: currency,
        refund_window_hours: Number(f.refund_window_hours.value),
      };
      if (f.capacity.value) { body.capacity = Number(f.capacity.value); }
      const submit = form.querySelector("[type=submit]");
      busy(submit, true);
      try {
        await api("POST", "/v1/sessions", body);
        window.location.reload();
      } catch (e) {
        say(form, e.message);
        busy(submit, false);
      }
    });
  }

  // -- a booking waiting for Stripe's word: poll until its state changes -----------------
  function pollBooking(el) {
    const url = "/v1/bookings/" + el.dataset.pollBooking + "/history";
    const from = el.dataset.status;
    let tries = 0;
    const tick = async () => {
      tries += 1;
      try {
        const h = await api("GET", url);
        if (h.booking.status !== from) { window.location.reload(); return; }
      } catch (e) {
        if (e.status && e.status < 500) { say(el, e.message); return; }
      }
      if (tries < 120) { window.setTimeout(tick, tries < 10 ? 1000 : 3000); }
      else { say(el, "Still waiting for Stripe: reload this page in a minute.", "warn"); }
    };
    window.setTimeout(tick, 1000);
  }

  function signOut(form) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try { await api("POST", form.action, {}); } catch (e) { /* signed out or not: go home */ }
      window.location.assign("/");
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    localTimes(document);
    document.querySelectorAll("button[data-post]").forEach((b) => {
      b.addEventListener("click", () => postButton(b));
    });
    document.querySelectorAll("button[data-dashboard]").forEach((b) => {
      b.addEventListener("click", () => dashboardButton(b));
    });
    document.querySelectorAll("form[data-refund]").forEach(refundForm);
    document.querySelectorAll("form#publish-session").forEach(publishForm);
    document.querySelectorAll("[data-poll-booking]").forEach(pollBooking);
    document.querySelectorAll("form[data-sign-out]").forEach(signOut);
    document.documentElement.dataset.ready = "1";
  });

  window.coachpay = { api: api, cookie: cookie, toMinor: toMinor };
})();

// -- the admin page: an endpoint's enable/disable button and its "replay range" form ----
(function () {
  "use strict";

  function say(el, text, kind) {
    const box = el.closest("[data-messages]");
    const target = box && box.querySelector(".message");
    if (!target) { return; }
    target.textContent = text;
    target.className = "message " + (kind || "bad");
    target.hidden = false;
  }

  function toggleButton(btn) {
    btn.addEventListener("click", async () => {
      btn.disabled = true;
      try {
        await window.coachpay.api("PATCH", btn.dataset.url,
          { enabled: btn.dataset.endpointEnable === "true" });
        window.location.reload();
      } catch (e) {
        say(btn, e.message);
        btn.disabled = false;
      }
    });
  }

  // datetime-local is the viewer's own time; the API takes instants with a zone.
  function instant(value) {
    const when = new Date(value);
    return isNaN(when.getTime()) ? null : when.toISOString();
  }

  function replayForm(form) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const start = instant(form.elements.from.value);
      const end = instant(form.elements.to.value);
      if (!start || !end) { say(form, "Pick both ends of the range."); return; }
      if (end <= start) { say(form, "The end must be after the start."); return; }
      const submit = form.querySelector("[type=submit]");
      submit.disabled = true;
      try {
        const r = await window.coachpay.api("POST", form.dataset.url, { from: start, to: end });
        say(form, r.queued + (r.queued === 1 ? " delivery" : " deliveries") +
          " queued: the worker sends them within seconds.", "ok");
      } catch (e) {
        say(form, e.message);
      }
      submit.disabled = false;
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("button[data-endpoint-enable]").forEach(toggleButton);
    document.querySelectorAll("form[data-replay-range]").forEach(replayForm);
  });
})();
