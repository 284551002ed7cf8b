// The API docs viewer: reads this node's OpenAPI document and shows its routes (grouped by
// tag, with parameters, request body and answers) and its schemas. Everything is built with
// DOM calls and textContent, never innerHTML, so text in the document cannot become markup.
"use strict";

const METHODS = ["get", "post", "put", "patch", "delete"];

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

// A schema as a short type: `Product`, `array of Product`, `string (uuid)`, `integer`.
function typeOf(schema) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.oneOf || schema.anyOf) {
    return (schema.oneOf || schema.anyOf).map(typeOf).filter((t) => t !== "null").join(" | ");
  }
  if (schema.allOf) return schema.allOf.map(typeOf).join(" & ");
  const types = Array.isArray(schema.type) ? schema.type.filter((t) => t !== "null") : [schema.type];
  const type = types.join(" | ") || "object";
  if (type === "array") return "array of " + typeOf(schema.items);
  if (schema.enum) return type + " (" + schema.enum.join(", ") + ")";
  return schema.format ? type + " (" + schema.format + ")" : type;
}

// A type, linked to its schema below when it is a named one.
function typeLink(schema) {
  const text = typeOf(schema);
  const ref = schema && (schema.$ref || (schema.items && schema.items.$ref));
  if (!ref) return el("code", {}, text);
  return el("a", { href: "#schema-" + ref.split("/").pop() }, el("code", {}, text));
}

function contentSchema(content) {
  const json = content && (content["application/json"] || Object.values(content)[0]);
  return json ? json.schema : null;
}

function table(headings, rows) {
  const head = el("tr", {}, ...headings.map((h) => el("th", {}, h)));
  return el("table", {}, head, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c)))));
}

function operation(path, method, op, documentSecurity) {
  const secured = (op.security || documentSecurity || []).length > 0;
  const summary = el("summary", {},
    el("span", { class: "method " + method }, method),
    el("span", { class: "path" }, path), " ",
    op.summary || "",
    secured ? el("span", { class: "lock" }, "🔒 bearer token") : null);
  const body = el("div", {});
  if (op.description && op.description !== op.summary) body.append(el("p", {}, op.description));
  const params = op.parameters || [];
  if (params.length) {
    body.append(el("h4", {}, "Parameters"), table(["name", "in", "required", "type", "description"],
      params.map((p) => [el("code", {}, p.name), p.in, p.required ? "yes" : "no", typeLink(p.schema), p.description || ""])));
  }
  if (op.requestBody) {
    body.append(el("h4", {}, "Request body"), typeLink(contentSchema(op.requestBody.content)));
  }
  const responses = Object.entries(op.responses || {});
  if (responses.length) {
    body.append(el("h4", {}, "Responses"), table(["status", "description", "body"],
      responses.map(([status, r]) => [status, r.description || "", typeLink(contentSchema(r.content))])));
  }
  const details = el("details", { class: "op" }, summary, body);
  details.dataset.search = [method, path, op.summary || "", (op.tags || []).join(" ")].join(" ").toLowerCase();
  return details;
}

function schemaSection(name, schema) {
  const section = el("div", { class: "schema", id: "schema-" + name }, el("h3", {}, name));
  if (schema.description) section.append(el("p", {}, schema.description));
  const required = new Set(schema.required || []);
  const properties = Object.entries(schema.properties || {});
  if (properties.length) {
    section.append(table(["field", "type", "required", "description"],
      properties.map(([field, s]) => [el("code", {}, field), typeLink(s), required.has(field) ? "yes" : "no", s.description || ""])));
  } else {
    section.append(el("p", {}, typeLink(schema)));
  }
  return section;
}

function render(doc) {
  document.getElementById("title").textContent = doc.info.title + " " + (doc.info.version || "");
  document.getElementById("summary").textContent =
    (doc.info.description || "") + " OpenAPI " + doc.openapi + ", from /api/openapi.json.";
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const tag = (op.tags && op.tags[0]) || "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(path, method, op, doc.security));
    }
  }
  const nav = document.getElementById("tags");
  const operations = document.getElementById("operations");
  for (const tag of [...byTag.keys()].sort()) {
    nav.append(el("a", { href: "#tag-" + tag }, tag));
    operations.append(el("h2", { id: "tag-" + tag }, tag), ...byTag.get(tag));
  }
  const schemas = document.getElementById("schemas");
  const components = Object.entries((doc.components && doc.components.schemas) || {});
  if (components.length) schemas.append(el("h2", { id: "schemas-title" }, "Schemas"));
  for (const [name, schema] of components.sort(([a], [b]) => a.localeCompare(b))) {
    schemas.append(schemaSection(name, schema));
  }
}

function filter(text) {
  const needle = text.trim().toLowerCase();
  for (const op of document.querySelectorAll("details.op")) {
    op.hidden = needle !== "" && !op.dataset.search.includes(needle);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("filter").addEventListener("input", (event) => filter(event.target.value));
  fetch("/api/openapi.json")
    .then((response) => {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    })
    .then(render)
    .catch((error) => {
      const summary = document.getElementById("summary");
      summary.className = "error";
      summary.textContent = "Cannot load /api/openapi.json: " + error.message;
    });
});
