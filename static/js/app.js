// Small progressive enhancements: copy buttons, the phone menu, toasts, slug suggestion, the managed LLM switch.
(function () {
  document.addEventListener("click", function (event) {
    const copy = event.target.closest("[data-copy]");
    if (copy) {
      const text = document.getElementById(copy.dataset.copy).textContent.trim();
      navigator.clipboard.writeText(text).then(function () {
        copy.textContent = "Copied";
        setTimeout(function () { copy.textContent = "Copy"; }, 2000);
      });
    }
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
  // Money as the `usd` template filter shows it: cents, or the fractions of a cent one call costs.
  window.usd = function (value) {
    const n = Number(value), a = Math.abs(n), sign = n < 0 ? "-" : "";
    if (!isFinite(n)) return "—";
    if (a === 0) return "$0.00";
    if (a < 0.000001) return sign + "<$0.000001";
    if (a < 0.01) return sign + "$" + a.toFixed(6).replace(/0+$/, "");
    return sign + "$" + a.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  };
  window.toast = function (text, kind) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const item = document.createElement("div");
    item.className = "toast" + (kind === "error" ? " error" : "");
    item.setAttribute("role", "status");
    item.textContent = text;
    box.appendChild(item);
    setTimeout(function () { item.remove(); }, 5000);
  };
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".toast").forEach(function (t) { setTimeout(function () { t.remove(); }, 5000); });
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
    const name = document.getElementById("id_tenant_name");
    const slug = document.getElementById("id_tenant_slug");
    if (name && slug) {
      let edited = slug.value !== "";
      slug.addEventListener("input", function () { edited = true; });
      name.addEventListener("input", function () {
        if (edited) return;
        slug.value = name.value.toLowerCase().normalize("NFKD").replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 50);
      });
    }
  });
})();
