// The LLM configuration modal: reads the catalog and the saved preferences from /api/llm/*, shows the fields
// of the chosen mode and endpoint kind, tests the connection, and saves through the API (whose field errors are
// shown next to their fields; nothing is saved on error).
(function () {
  const state = { models: [], byId: {}, config: null, unplaced: [] };
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const csrf = () => (document.cookie.match(/csrftoken=([^;]+)/) || [])[1] || "";

  function api(path, options) {
    const agent = state.config.agent ? (path.includes("?") ? "&" : "?") + "agent=" + encodeURIComponent(state.config.agent) : "";
    return fetch(path + agent, Object.assign({ credentials: "same-origin", headers: {
      "Content-Type": "application/json", "X-CSRFToken": csrf() } }, options || {}))
      .then(r => r.json().catch(() => ({})).then(body => ({ status: r.status, body })));
  }

  function mode() { return ($("input[name=mode]:checked") || {}).value || "platform"; }
  function kind() { return $("#ce_kind").value; }

  // The models a call in the chosen mode could reach now (config.callable, from the server): a managed agent's
  // tier, the providers the saved keys reach. In byok mode a key typed here (or, before any key is saved, the one
  // about to be typed) is saved with the settings, so any priced model can be chosen with it; the API checks.
  function offered(m) {
    const callable = (state.config.callable || {})[mode()];
    if (!callable) return true;
    if (mode() === "byok" && ($("#api_key").value.trim() || !callable.length)) {
      return m.input_usd_per_mtok !== null && m.output_usd_per_mtok !== null;
    }
    return callable.includes(m.id);
  }

  function fillModels() {
    const eu = $("#eu_only").checked;
    const select = $("#model");
    const p = state.config.prefs;
    // Preselected only what is saved for this mode: nothing the user never chose (a placeholder asks instead).
    const current = select.value || (p.configured && p.mode === mode() ? p.model : "");
    select.innerHTML = "";
    select.appendChild(new Option("Choose a model…", ""));
    const fallbacks = $("#fallbacks");
    const chosenFallbacks = new Set(Array.from(fallbacks.selectedOptions).map(o => o.value).concat(
      fallbacks.options.length ? [] : state.config.prefs.fallbacks || []));
    fallbacks.innerHTML = "";
    state.providers.forEach(provider => {
      const models = provider.models.filter(m => (!eu || m.eu_hosted) && !(m.capabilities || []).includes("embeddings")
        && provider.id !== "custom" && offered(m));
      if (!models.length) return;
      const group = document.createElement("optgroup");
      group.label = provider.name;
      const fgroup = group.cloneNode();
      models.forEach(m => {
        const option = new Option(m.name + (m.recommended ? " ★" : "") + (m.eu_hosted ? " · EU" : ""), m.id);
        group.appendChild(option);
        const f = new Option(m.name, m.id, false, chosenFallbacks.has(m.id));
        fgroup.appendChild(f);
      });
      select.appendChild(group);
      fallbacks.appendChild(fgroup);
    });
    if (state.byId[current] && (!eu || state.byId[current].eu_hosted)) select.value = current;
    showModelInfo();
  }

  function showModelInfo() {
    const m = state.byId[$("#model").value];
    const box = $("#model-info");
    if (!m) { box.textContent = ""; return; }
    const money = v => v === null || v === undefined ? "—" : "$" + Number(v).toFixed(2);
    box.innerHTML = "<dl>" +
      "<div><dt>Input / 1M tokens</dt><dd>" + money(m.input_usd_per_mtok) + "</dd></div>" +
      "<div><dt>Output / 1M tokens</dt><dd>" + money(m.output_usd_per_mtok) + "</dd></div>" +
      "<div><dt>Context</dt><dd>" + (m.context_length || "—").toLocaleString() + "</dd></div>" +
      "<div><dt>Max output</dt><dd>" + (m.max_output_tokens || "—").toLocaleString() + "</dd></div>" +
      "<div><dt>Tier</dt><dd>" + (m.tier || "—") + "</dd></div>" +
      "<div><dt>Capabilities</dt><dd>" + ((m.capabilities || []).join(", ") || "—") + "</dd></div>" +
      "<div><dt>EU-hosted</dt><dd>" + (m.eu_hosted ? "yes" : "no") + "</dd></div>" +
      "<div><dt>Recommended</dt><dd>" + (m.recommended ? "yes" : "no") + "</dd></div></dl>";
    // The model's output limit bounds both controls; a value above it comes down to it, any other stays as it is.
    const limit = m.max_output_tokens || 128000, num = $("#max_tokens_num");
    $("#max_tokens").max = limit; num.max = limit;
    if (Number(num.value) > limit) { num.value = limit; $("#max_tokens").value = limit; }
  }

  function showSections() {
    const m = mode();
    $$("[data-section=byok]").forEach(el => { el.hidden = m !== "byok"; });
    $$("[data-section=custom]").forEach(el => { el.hidden = m !== "custom"; });
    $$("[data-section=model]").forEach(el => { el.hidden = m === "custom"; });
    $$("[data-kind]").forEach(el => { el.hidden = !el.dataset.kind.split(" ").includes(kind()); });
  }

  function clearErrors() {
    $$("[data-error]").forEach(el => { el.innerHTML = ""; });
    $$(".field.has-error").forEach(el => el.classList.remove("has-error"));
    state.unplaced = [];
    summarize();
  }

  // One summary at the top of the modal: the fields that need attention, and any error that has no field.
  function summarize() {
    const names = $$(".field.has-error").map(f => { const l = $("label", f); return l ? l.textContent.trim() : ""; })
      .filter(Boolean);
    const parts = names.length ? ["Check " + (names.length === 1 ? "this field" : "these fields") + ": " + names.join(", ") + "."] : [];
    const top = $("#form-error");
    top.textContent = parts.concat(state.unplaced).join(" ");
    top.hidden = !top.textContent;
  }

  // An error goes as soon as its field changes, and so does the connection test's answer (it was about other values).
  function fieldChanged(event) {
    const field = event.target.closest(".field");
    if (field && field.classList.contains("has-error")) {
      field.classList.remove("has-error");
      $$("[data-error]", field).forEach(el => { el.innerHTML = ""; });
    }
    $$('[data-error="custom_endpoint"]').forEach(el => { if (event.target.closest("[data-section=custom]")) el.innerHTML = ""; });
    $("#test-result").innerHTML = "";
    summarize();
  }

  function showErrors(body, prefix) {
    Object.entries(body || {}).forEach(([field, messages]) => {
      const name = prefix ? prefix + "." + field : field;
      if (messages && !Array.isArray(messages) && typeof messages === "object") { showErrors(messages, name); return; }
      const list = $('[data-error="' + name + '"]') || $('[data-error="' + (prefix || "") + '"]');
      const text = [].concat(messages).join(" ");
      if (list) {
        list.innerHTML = "<li>" + text.replace(/</g, "&lt;") + "</li>";
        const field = list.closest(".field"); if (field) field.classList.add("has-error");
      } else {
        state.unplaced.push(text);
      }
    });
    summarize();
  }

  // Bring the first error into view, opening the Advanced section when that is where it is.
  function revealErrors() {
    const first = $(".has-error") || (!$("#form-error").hidden && $("#form-error"));
    if (!first) return;
    $$(".has-error").forEach(field => { const details = field.closest("details"); if (details) details.open = true; });
    first.scrollIntoView({ block: "nearest" });
  }

  function body() {
    const data = { mode: mode(), temperature: Number($("#temperature_num").value), max_tokens: Number($("#max_tokens_num").value) };
    if (data.mode === "custom") {
      const ce = { kind: kind() };
      const put = (id, key) => { const v = $(id).value.trim(); if (v) ce[key] = v; };
      put("#ce_base_url", "base_url"); put("#ce_api_key", "api_key"); put("#ce_deployment", "deployment");
      put("#ce_api_version", "api_version"); put("#ce_region", "region"); put("#ce_access_key_id", "access_key_id");
      put("#ce_secret_access_key", "secret_access_key");
      data.custom_endpoint = ce;
      data.model = $("#ce_model").value.trim() || undefined;
    } else {
      data.model = $("#model").value;  // empty: "Choose a model." (nothing is saved that the user did not pick)
      data.eu_only = $("#eu_only").checked;
      data.fallbacks = Array.from($("#fallbacks").selectedOptions).map(o => o.value).filter(v => v !== data.model);
      if (data.mode === "byok" && $("#api_key").value.trim()) data.api_key = $("#api_key").value.trim();
    }
    return data;
  }

  function reloadPage() {
    const next = new URL(window.location.href);
    next.searchParams.delete("configure");  // do not open the modal again on the reloaded page
    setTimeout(() => window.location.replace(next), 600);
  }

  function showRouteWarnings(warnings) {
    const box = $("#route-warnings");
    box.innerHTML = "";
    const head = document.createElement("strong");
    head.textContent = "Saved. With these settings, some routes cannot reach every target:";
    const list = document.createElement("ul");
    warnings.forEach(w => {
      const item = document.createElement("li");
      item.textContent = w.route + " → " + w.model + ": " + w.reason;
      list.appendChild(item);
    });
    const tail = document.createElement("p");
    tail.textContent = "Calls through these routes fall through to their next target that works. ";
    const link = document.createElement("a");
    link.href = "/routes/"; link.textContent = "Review the routes";
    tail.appendChild(link);
    box.append(head, list, tail);
    box.hidden = false;
    box.scrollIntoView({ block: "nearest" });
  }

  function load() {
    const p = state.config.prefs;
    const platform = $('input[name=mode][value=platform]');
    if (!p.platform_mode_available) {
      platform.disabled = true;
      $("[data-platform-reason]").textContent = " " + (p.platform_mode_reason || "");
    }
    // Saved settings open on their mode; a workspace with none opens on the first mode it can use.
    const usable = $$("input[name=mode]").filter(r => !r.disabled);
    const radio = p.configured ? $('input[name=mode][value="' + p.mode + '"]') : usable[0];
    if (radio) radio.checked = true;
    $("#eu_only").checked = !!p.eu_only;
    $("#eu_only").disabled = !!p.tenant_eu_only;
    $("#temperature").value = p.temperature; $("#temperature_num").value = p.temperature;
    // The number box holds the exact saved value (the slider snaps to its step of 100, so it never is the source).
    $("#max_tokens").value = p.max_tokens; $("#max_tokens_num").value = p.max_tokens;
    $("#api-key-saved").textContent = p.api_key_masked ? "Saved key: " + p.api_key_masked + " — leave empty to keep it, type a new one to replace it." : "No key saved yet.";
    const ce = p.custom_endpoint || {};
    if (ce.kind) $("#ce_kind").value = ce.kind;
    ["base_url", "deployment", "api_version", "region", "access_key_id"].forEach(k => { if (ce[k]) $("#ce_" + k).value = ce[k]; });
    $("[data-ce-saved]").textContent = ce.api_key_masked ? "Saved: " + ce.api_key_masked + " — leave empty to keep it." : "";
    if (p.mode === "custom") $("#ce_model").value = p.model || "";
    fillModels();
    showSections();
  }

  function init() {
    const configEl = document.getElementById("llm-config");
    const openButton = document.getElementById("open-llm-config");
    if (!configEl || !openButton) return;
    state.config = JSON.parse(configEl.textContent);
    const dialog = $("#llm-modal");
    // The modal opens once the catalog and the saved settings are in it, so nothing typed is overwritten.
    openButton.disabled = true;
    fetch("/api/llm/models", { credentials: "same-origin" }).then(r => r.json()).then(data => {
      state.providers = data.providers || [];
      state.providers.forEach(p => p.models.forEach(m => { state.byId[m.id] = m; }));
      load();
      openButton.disabled = false;
      if (new URLSearchParams(window.location.search).has("configure")) openButton.click();  // "Configure" links
    }).catch(() => { window.toast("Could not load the model catalog; reload the page to try again.", "error"); });
    openButton.addEventListener("click", () => {
      clearErrors(); $("#test-result").innerHTML = ""; $("#route-warnings").hidden = true; dialog.showModal();
    });
    $("[data-close]", dialog).addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => { if (state.saved) reloadPage(); });
    // A new mode is a new form: the errors and the connection test's answer of the old one go.
    $$("input[name=mode]").forEach(r => r.addEventListener("change", () => {
      clearErrors(); $("#test-result").innerHTML = ""; fillModels(); showSections();
    }));
    ["input", "change"].forEach(type => $("#llm-form").addEventListener(type, event => {
      if (event.target.name !== "mode") fieldChanged(event);
    }));
    $("#api_key").addEventListener("input", fillModels);
    $("#ce_kind").addEventListener("change", showSections);
    $("#eu_only").addEventListener("change", fillModels);
    $("#model").addEventListener("change", showModelInfo);
    $("#temperature").addEventListener("input", e => { $("#temperature_num").value = e.target.value; });
    $("#temperature_num").addEventListener("input", e => { $("#temperature").value = e.target.value; });
    $("#max_tokens").addEventListener("input", e => { $("#max_tokens_num").value = e.target.value; });
    $("#max_tokens_num").addEventListener("input", e => { $("#max_tokens").value = e.target.value; });
    $("#discover").addEventListener("click", () => {
      const out = $("#discovered");
      out.innerHTML = '<span class="spinner"></span> Asking the server…';
      fetch("/api/llm/ollama/models?base_url=" + encodeURIComponent($("#ce_base_url").value), { credentials: "same-origin" })
        .then(r => r.json().then(b => ({ status: r.status, body: b }))).then(({ status, body }) => {
          if (status !== 200) { out.textContent = (body.error && body.error.hint) || JSON.stringify(body); return; }
          const names = (body.models || []).map(m => typeof m === "string" ? m : m.id);
          out.innerHTML = names.length ? "Found: " : "No models on this server.";
          names.forEach(name => {
            const b = document.createElement("button"); b.type = "button"; b.className = "btn small"; b.textContent = name;
            b.addEventListener("click", () => { $("#ce_model").value = name.replace(/^ollama:/, ""); });
            out.appendChild(b);
          });
        });
    });
    $("#test-connection").addEventListener("click", () => {
      const out = $("#test-result");
      out.innerHTML = '<span class="spinner" role="status" aria-label="Testing"></span> Testing the connection…';
      out.scrollIntoView({ block: "nearest" });
      api("/api/llm/test-connection", { method: "POST", body: JSON.stringify(body()) }).then(({ status, body }) => {
        if (status === 200 && body.ok) {
          out.innerHTML = '<div class="test-result ok">Connected: ' + String(body.model).replace(/</g, "&lt;") + " answered in " + body.latency_ms + " ms.</div>";
        } else if (status === 200) {
          const e = body.error || {};
          out.innerHTML = '<div class="test-result fail"><strong>' + (e.kind || "error") + ":</strong> " +
            String(e.message || "").replace(/</g, "&lt;") + "<br>" + String(e.hint || "").replace(/</g, "&lt;") + "</div>";
        } else { clearErrors(); showErrors(body); revealErrors(); out.innerHTML = ""; return; }
        out.scrollIntoView({ block: "nearest" });
      });
    });
    $("#llm-form").addEventListener("submit", event => {
      event.preventDefault();
      clearErrors();
      const save = $("#save"); save.disabled = true;
      api("/api/llm/preferences", { method: "POST", body: JSON.stringify(body()) }).then(({ status, body }) => {
        save.disabled = false;
        if (status === 200 || status === 201) {
          state.saved = true;
          // Route targets this change left unreachable: said here, before the page reloads (on Close).
          if ((body.route_warnings || []).length) { showRouteWarnings(body.route_warnings); return; }
          dialog.close();
          window.toast("LLM settings saved.");
        } else { showErrors(body); revealErrors(); }
      });
    });
  }
  document.addEventListener("DOMContentLoaded", init);
})();
