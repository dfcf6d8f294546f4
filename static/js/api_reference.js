// The API reference page: Swagger UI (served from our own static files, drf-spectacular-sidecar) on the schema.
(function () {
  document.addEventListener("DOMContentLoaded", function () {
    const root = document.getElementById("swagger-ui");
    if (!root || typeof window.SwaggerUIBundle !== "function") return;
    window.SwaggerUIBundle({
      url: root.dataset.schemaUrl,
      dom_id: "#swagger-ui",
      deepLinking: true,
      docExpansion: "none",
      defaultModelsExpandDepth: 0,
      requestInterceptor: function (request) {
        const token = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
        if (token) request.headers["X-CSRFToken"] = decodeURIComponent(token[1]);
        return request;
      },
    });
  });
})();
