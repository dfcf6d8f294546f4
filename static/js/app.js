// Small progressive enhancements: copy buttons, the phone menu, toasts, slug suggestion, the managed LLM switch.
(function () {
  // Copy the text of the element a [data-copy] button names. The Clipboard API needs a secure context (HTTPS or
  // localhost); elsewhere the text is selected and copied the older way, and left selected if even that fails.
  function copyFrom(button) {
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    const text = source.textContent.trim();
    const label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    const done = function (ok) {
      button.textContent = ok ? "Copied" : "Press Ctrl+C to copy";
      setTimeout(function () { button.textContent = label; }, 2000);
    };
    const fallback = function () {
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      let ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      if (ok) selection.removeAllRanges();
      done(ok);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, fallback);
    } else {
      fallback();
    }
  }
  document.addEventListener("click", function (event) {
    const copy = event.target.closest("[data-copy]");
    if (copy) copyFrom(copy);
    const toggle = event.target.closest(".menu-toggle");
    if (toggle) {
      const nav = document.getElementById("sidenav");
      const open = nav.classList.toggle("open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    }
  });
  document.addEventListener("change", function (event) {
    if (event.target.matches("select[data-autosubmit]")) event.target.form.submit();
  });
  document.addEventListener("submit", function (event) {
    const message = event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });
  // Numbers as the `usd` and `num` template filters show them (llm/templatetags/money.py), the same on every page.
  // Money: cents, or the fractions of a cent one call costs.
  window.usd = function (value) {
    const n = Number(value), a = Math.abs(n), sign = n < 0 ? "-" : "";
    if (!isFinite(n)) return "—";
    if (a === 0) return "$0.00";
    if (a < 0.000001) return sign + "<$0.000001";
    if (a < 0.01) return sign + "$" + a.toFixed(6).replace(/0+$/, "");
    return sign + "$" + a.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  };
  // A count or a measure with thousands separators: 1180 → "1,180"; `places` decimals, none by default.
  window.num = function (value, places) {
    const n = Number(value), digits = places || 0;
    if (value === null || value === undefined || value === "" || !isFinite(n)) return "—";
    return n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  };
  // A message from a script: news fades after 5 s, an error stays until its close button is pressed; each can be
  // dismissed. (The page's own messages are inline at its top, `_notices.html`, and stay until dismissed.)
  window.toast = function (text, kind) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const error = kind === "error";
    const item = document.createElement("div");
    item.className = "toast" + (error ? " error" : "");
    item.setAttribute("role", error ? "alert" : "status");
    const body = document.createElement("span");
    body.className = "notice-text";
    body.textContent = text;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "notice-close";
    close.setAttribute("data-dismiss", "");
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    item.append(body, close);
    box.appendChild(item);
    if (!error) setTimeout(function () { item.remove(); }, 5000);
  };
  document.addEventListener("click", function (event) {
    const dismiss = event.target.closest("[data-dismiss]");
    if (dismiss) dismiss.closest(".notice, .toast").remove();
  });
  document.addEventListener("DOMContentLoaded", function () {
    // A form sent back with errors: the first field in error gets the focus (and says so to screen readers).
    const firstError = document.querySelector(".field.has-error input, .field.has-error select, .field.has-error textarea");
    if (firstError) {
      document.querySelectorAll(".field.has-error").forEach(function (field) {
        const control = field.querySelector("input, select, textarea");
        const list = field.querySelector(".errorlist[id]");
        if (control) control.setAttribute("aria-invalid", "true");
        if (control && list) control.setAttribute("aria-describedby", list.id);
      });
      firstError.focus();
    }
    // Managed LLM: picking a plan ticks "Use managed LLM"; unticking it dims the plans (kept, not used).
    document.querySelectorAll("[data-managed-form]").forEach(function (form) {
      const toggle = form.querySelector("[data-managed-toggle]");
      const tiers = form.querySelector("[data-managed-tiers]");
      if (!toggle || !tiers) return;
      const show = function () { tiers.classList.toggle("off", !toggle.checked); };
      tiers.addEventListener("change", function () { toggle.checked = true; show(); });
      toggle.addEventListener("change", show);
      show();
    });
    // Caps: the dollars a TCU figure stands for, as it is typed, and a word when a hard cap would stop paid calls now.
    document.querySelectorAll("[data-caps-form]").forEach(function (form) {
      const rate = Number(form.dataset.tcuUsd), used = Number(form.dataset.tcuUsed);
      const warning = form.querySelector("[data-cap-warning]");
      const update = function (input) {
        const out = form.querySelector('[data-usd-for="' + input.id + '"]');
        const text = input.value.trim(), n = Number(text);
        const valid = text !== "" && /^\d+$/.test(text);
        if (out) out.textContent = valid ? "= " + window.usd(n * rate) : "";
        if (warning && input.name === "hard_tcu") {
          // Once the server has asked (the confirmation box is there), its message says it.
          const blocks = valid && n <= used && !form.querySelector("[name=confirm]");
          warning.hidden = !blocks;
          warning.textContent = blocks ? "At or below the " + used.toLocaleString("en-US") +
            " TCU already used this month: every paid call would be refused at once. You will be asked to confirm." : "";
        }
      };
      form.querySelectorAll("input[name=warn_tcu], input[name=hard_tcu]").forEach(function (input) {
        input.addEventListener("input", function () { update(input); });
        update(input);
      });
    });
    const name = document.getElementById("id_tenant_name");
    const slug = document.getElementById("id_tenant_slug");
    if (name && slug) {
      let edited = slug.value !== "";
      slug.addEventListener("input", function () { edited = true; });
      name.addEventListener("input", function () {
        if (edited) return;
        // Accents dropped, not turned into hyphens: "Ünïcode Café & Co" → "unicode-cafe-co" (as the server does).
        slug.value = name.value.normalize("NFKD").replace(/[\u0300-\u036f]/g, "").toLowerCase()
          .replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 50).replace(/-+$/, "");
      });
    }
  });
})();
