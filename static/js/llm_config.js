// The LLM configuration modal: reads the catalog and the saved preferences from /api/llm/*, shows the fields
// of the chosen mode and endpoint kind, tests the connection, and saves through the API (whose field errors are
// shown next to their fields; nothing is saved on error).
(function () {
  const state = { models: [], byId: {}, config: null, unplaced: [], drafts: null, saved: false };
  const MAX_FALLBACKS = 5;
  // A failed connection test in words (the API's `kind`), and the endpoint kinds as people call them.
  const FAILURES = {
    auth: "The key was refused", rate_limit: "The provider is rate limiting this key", not_found: "The model was not found",
    bad_request: "The provider refused the request", timeout: "No answer in time", unavailable: "Could not connect",
    context_length: "The request is too long for this model", content_policy: "The provider's content policy refused it",
  };
  const KIND_NAMES = { openai_compatible: "The endpoint", azure_openai: "Azure OpenAI", bedrock: "AWS Bedrock", ollama: "Ollama" };
  const plainProvider = text => text.replace(/^(openai_compatible|azure_openai|bedrock|ollama)\b:?/, kind => KIND_NAMES[kind.replace(":", "")]);
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

  // Each mode keeps its own unsaved model and fallbacks until the modal is closed; reopening shows what is saved.
  // Only the saved mode has a saved model: the others start with nothing chosen.
  function savedDrafts() {
    const p = state.config.prefs, drafts = {};
    ["platform", "byok", "custom"].forEach(m => {
      const mine = p.configured && p.mode === m;
      drafts[m] = { model: mine ? p.model : "", fallbacks: mine ? (p.fallbacks || []).slice() : [] };
    });
    return drafts;
  }
  function draft() { return state.drafts[mode()]; }

  function chatModels() {
    const eu = $("#eu_only").checked;
    return state.providers.map(provider => ({ provider, models: provider.models.filter(m => (!eu || m.eu_hosted)
      && !(m.capabilities || []).includes("embeddings") && provider.id !== "custom" && offered(m)) }))
      .filter(group => group.models.length);
  }

  // The embedding model `default` calls on /v1/embeddings: one the workspace can call, or the chat model's
  // provider's own (none chosen). In custom mode it is a name the endpoint knows, set through the API.
  function fillEmbeddings() {
    const select = $("#embedding_model"), saved = state.config.prefs.embedding_model || "";
    const current = select.dataset.touched ? select.value : saved;
    select.innerHTML = "";
    select.appendChild(new Option("The chat model's provider's embedding model", ""));
    state.providers.forEach(provider => {
      const models = provider.models.filter(m => (m.capabilities || []).includes("embeddings") && offered(m));
      if (!models.length) return;
      const group = document.createElement("optgroup");
      group.label = provider.name;
      models.forEach(m => group.appendChild(new Option(m.name, m.id)));
      select.appendChild(group);
    });
    select.value = current;
    if (select.value !== current) select.value = "";
    $("#embedding-field").hidden = mode() === "custom";
  }

  function fillModels() {
    fillEmbeddings();
    const select = $("#model");
    const current = draft().model;
    select.innerHTML = "";
    select.appendChild(new Option("Choose a model…", ""));
    chatModels().forEach(({ provider, models }) => {
      const group = document.createElement("optgroup");
      group.label = provider.name;
      models.forEach(m => group.appendChild(new Option(m.name + (m.recommended ? " ★" : "") + (m.eu_hosted ? " · EU" : ""), m.id)));
      select.appendChild(group);
    });
    select.value = current;
    if (select.value !== current) select.value = "";  // not offered here (EU filter, no key): nothing chosen
    fillFallbackPick();
    showModelInfo();
    keyHint();
  }

  // Fallbacks: an ordered list the user builds (add, move up/down, remove); the saved order is this order.
  function fillFallbackPick() {
    const pick = $("#fallback-pick"), d = draft();
    pick.innerHTML = "";
    pick.appendChild(new Option("Add a fallback model…", ""));
    chatModels().forEach(({ provider, models }) => {
      const group = document.createElement("optgroup");
      group.label = provider.name;
      models.filter(m => m.id !== $("#model").value && !d.fallbacks.includes(m.id))
        .forEach(m => group.appendChild(new Option(m.name, m.id)));
      if (group.children.length) pick.appendChild(group);
    });
  }

  function renderFallbacks() {
    const list = $("#fallbacks"), items = draft().fallbacks;
    list.innerHTML = "";
    items.forEach((id, i) => {
      const li = document.createElement("li");
      li.dataset.model = id;
      const row = document.createElement("div");
      const name = document.createElement("span");
      name.className = "name";
      const m = state.byId[id];
      name.textContent = m ? m.name + " (" + id + ")" : id;
      row.appendChild(name);
      [["up", "↑", "Move " + id + " up", i === 0], ["down", "↓", "Move " + id + " down", i === items.length - 1],
        ["remove", "Remove", "Remove " + id, false]].forEach(([action, text, label, disabled]) => {
        const b = document.createElement("button");
        b.type = "button"; b.className = "btn small" + (action === "remove" ? " danger" : "");
        b.dataset.fallback = action; b.dataset.index = i; b.textContent = text;
        b.setAttribute("aria-label", label); b.disabled = disabled;
        row.appendChild(b);
      });
      li.appendChild(row);
      list.appendChild(li);
    });
    $("#fallback-add").disabled = items.length >= MAX_FALLBACKS;
    fillFallbackPick();
  }

  function changeFallbacks(event) {
    const b = event.target.closest("button[data-fallback]");
    if (!b) return;
    const items = draft().fallbacks, i = Number(b.dataset.index);
    if (b.dataset.fallback === "remove") items.splice(i, 1);
    else {
      const j = b.dataset.fallback === "up" ? i - 1 : i + 1;
      if (j < 0 || j >= items.length) return;
      [items[i], items[j]] = [items[j], items[i]];
    }
    renderFallbacks();
    const again = $('#fallbacks button[data-fallback="' + b.dataset.fallback + '"][data-index="' +
      (b.dataset.fallback === "up" ? i - 1 : b.dataset.fallback === "down" ? i + 1 : i) + '"]');
    if (again && !again.disabled) again.focus();  // keep the keyboard where it was
  }

  function addFallback() {
    const source = mode() === "custom" ? $("#fallback-name") : $("#fallback-pick");
    const name = source.value.trim(), items = draft().fallbacks;
    if (!name || items.includes(name) || items.length >= MAX_FALLBACKS) return;
    items.push(name);
    source.value = "";
    renderFallbacks();
  }

  // The saved BYOK key a call of the chosen model would use (its provider's, else OpenRouter's), whatever the
  // saved mode: what "Test connection" sends when the key field is left empty.
  function keyHint() {
    const keys = state.config.prefs.saved_keys || {};
    const label = id => id === "openrouter" ? "OpenRouter" : ((state.providers.find(p => p.id === id) || {}).name || id);
    const m = state.byId[$("#model").value];
    const box = $("#api-key-saved");
    const typed = $("#api_key").value.trim() ? " The key typed above replaces it when you save." : "";
    if (m && !keys[m.provider] && !keys.openrouter && typed) {
      box.textContent = "The key typed above is saved (encrypted) with these settings.";
      return;
    }
    if (m) {
      const kind = keys[m.provider] ? m.provider : (keys.openrouter ? "openrouter" : "");
      box.textContent = kind
        ? "Saved " + label(kind) + " key: " + keys[kind] + " (used for this model) — leave empty to keep it, type a new one to replace it." + typed
        : "No " + label(m.provider) + (m.provider === "openrouter" ? "" : " or OpenRouter") + " key saved yet: enter one.";
      return;
    }
    const saved = Object.keys(keys);
    box.textContent = saved.length ? "Saved keys: " + saved.map(k => label(k) + " " + keys[k]).join(", ") + "." : "No key saved yet.";
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
    $$("[data-fallback-source]").forEach(el => { el.hidden = (el.dataset.fallbackSource === "custom") !== (m === "custom"); });
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
      // Prices go as shown, empty too: the form holds the saved ones, and clearing one is a change (an empty
      // input or output price is 0, an empty cache price the input price). The API checks them.
      $$("[data-ce-price]").forEach(input => { ce[input.dataset.cePrice] = input.value.trim(); });
      data.custom_endpoint = ce;
      data.model = $("#ce_model").value.trim() || undefined;
    } else {
      data.model = $("#model").value;  // empty: "Choose a model." (nothing is saved that the user did not pick)
      data.embedding_model = $("#embedding_model").value;
      data.eu_only = $("#eu_only").checked;
      if (data.mode === "byok" && $("#api_key").value.trim()) data.api_key = $("#api_key").value.trim();
    }
    data.fallbacks = draft().fallbacks.filter(v => v !== data.model);  // in the order of the list
    return data;
  }

  // Discover models: the server's own list (OpenAI's GET /v1/models, else Ollama's /api/tags), to pick from; its
  // names also feed the fallbacks' suggestions. Problems are said in words, never as the API's JSON.
  function discover() {
    const out = $("#discovered");
    out.innerHTML = '<span class="spinner"></span> Asking the server for its models…';
    const payload = { base_url: $("#ce_base_url").value.trim() };
    if ($("#ce_api_key").value.trim()) payload.api_key = $("#ce_api_key").value.trim();
    api("/api/llm/endpoint-models", { method: "POST", body: JSON.stringify(payload) }).then(({ status, body }) => {
      out.innerHTML = "";
      if (status !== 200) {
        const said = [].concat(body.base_url || body.api_key || body.detail || []).join(" ");
        out.textContent = said || "Could not ask the server for its models; try again.";
        out.classList.add("error");
        return;
      }
      out.classList.remove("error");
      const names = body.models || [];
      const lead = document.createElement("p");
      lead.textContent = names.length ? "Pick a model (" + names.length + " on this server):" : "The server lists no models yet.";
      out.appendChild(lead);
      const list = document.createElement("div");
      list.className = "endpoint-models";
      const suggestions = $("#endpoint-models");
      suggestions.innerHTML = "";
      names.forEach(name => {
        const b = document.createElement("button");
        b.type = "button"; b.className = "btn small"; b.textContent = name; b.dataset.endpointModel = name;
        b.addEventListener("click", () => {
          $("#ce_model").value = name; state.drafts.custom.model = name;
          $$("[data-endpoint-model]", list).forEach(o => o.setAttribute("aria-pressed", String(o === b)));
        });
        b.setAttribute("aria-pressed", String(name === $("#ce_model").value));
        list.appendChild(b);
        suggestions.appendChild(new Option(name, name));
      });
      out.appendChild(list);
    }).catch(() => { out.textContent = "Could not ask the server for its models; try again."; });
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
    // Everything typed and not saved goes: the form shows what is saved, per mode.
    state.drafts = savedDrafts();
    $("#api_key").value = "";
    const ce = p.custom_endpoint || {};
    $("#ce_kind").value = ce.kind || "openai_compatible";
    ["base_url", "deployment", "api_version", "region", "access_key_id"].forEach(k => { $("#ce_" + k).value = ce[k] || ""; });
    ["api_key", "secret_access_key"].forEach(k => { $("#ce_" + k).value = ""; });
    $$("[data-ce-price]").forEach(input => {
      const price = ce[input.dataset.cePrice];
      input.value = price === null || price === undefined ? "" : String(price);
    });
    $("[data-ce-saved]").textContent = ce.api_key_masked ? "Saved: " + ce.api_key_masked + " — leave empty to keep it." : "";
    $("#ce_model").value = state.drafts.custom.model;
    $("#fallback-name").value = "";
    $("#discovered").innerHTML = "";
    delete $("#embedding_model").dataset.touched;
    fillModels();
    renderFallbacks();
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
      state.providers.forEach(p => p.models.forEach(m => { m.provider = p.id; state.byId[m.id] = m; }));
      load();
      openButton.disabled = false;
      if (new URLSearchParams(window.location.search).has("configure")) openButton.click();  // "Configure" links
    }).catch(() => { window.toast("Could not load the model catalog; reload the page to try again.", "error"); });
    openButton.addEventListener("click", () => {
      load(); clearErrors(); $("#test-result").innerHTML = ""; $("#route-warnings").hidden = true; dialog.showModal();
    });
    $("[data-close]", dialog).addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => { if (state.saved) reloadPage(); });
    // A new mode is a new form: the errors and the connection test's answer of the old one go.
    $$("input[name=mode]").forEach(r => r.addEventListener("change", () => {
      clearErrors(); $("#test-result").innerHTML = ""; fillModels(); renderFallbacks(); showSections();
    }));
    ["input", "change"].forEach(type => $("#llm-form").addEventListener(type, event => {
      if (event.target.name !== "mode") fieldChanged(event);
    }));
    $("#api_key").addEventListener("input", fillModels);
    $("#ce_kind").addEventListener("change", showSections);
    $("#eu_only").addEventListener("change", fillModels);
    $("#model").addEventListener("change", () => {
      draft().model = $("#model").value; showModelInfo(); keyHint(); fillFallbackPick();
    });
    $("#ce_model").addEventListener("input", () => { state.drafts.custom.model = $("#ce_model").value; });
    $("#fallbacks").addEventListener("click", changeFallbacks);
    $("#fallback-add").addEventListener("click", addFallback);
    $("#fallback-name").addEventListener("keydown", event => {
      if (event.key === "Enter") { event.preventDefault(); addFallback(); }
    });
    $("#temperature").addEventListener("input", e => { $("#temperature_num").value = e.target.value; });
    $("#temperature_num").addEventListener("input", e => { $("#temperature").value = e.target.value; });
    $("#embedding_model").addEventListener("change", e => { e.target.dataset.touched = "1"; });
    $("#max_tokens").addEventListener("input", e => { $("#max_tokens_num").value = e.target.value; });
    $("#max_tokens_num").addEventListener("input", e => { $("#max_tokens").value = e.target.value; });
    $("#discover").addEventListener("click", discover);
    $("#test-connection").addEventListener("click", () => {
      const out = $("#test-result");
      out.innerHTML = '<span class="spinner" role="status" aria-label="Testing"></span> Testing the connection…';
      out.scrollIntoView({ block: "nearest" });
      api("/api/llm/test-connection", { method: "POST", body: JSON.stringify(body()) }).then(({ status, body }) => {
        if (status === 200 && body.ok) {
          out.innerHTML = '<div class="test-result ok">Connected: ' + String(body.model).replace(/</g, "&lt;") + " answered in " + body.latency_ms + " ms.</div>";
        } else if (status === 200) {
          const e = body.error || {};
          out.innerHTML = '<div class="test-result fail"><strong>' + (FAILURES[e.kind] || "It did not work") + ".</strong> " +
            plainProvider(String(e.message || "")).replace(/</g, "&lt;") + "<br>" + String(e.hint || "").replace(/</g, "&lt;") + "</div>";
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
