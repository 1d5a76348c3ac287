/*
 * Herald's rule builder: condition trees and action lists edited with pickers and typed
 * inputs instead of JSON.
 *
 * The JSON in the field's textarea is the model: the builder parses it, edits the parsed
 * object in place and writes it back on every change, so keys it does not know survive
 * and the "advanced" raw JSON view round-trips. What it offers comes from the catalogue
 * the server renders beside the field (<script type="application/json">, generated from
 * the operator and action registries), never from a list kept here. Served as a static
 * file: the admin's Content-Security-Policy refuses inline scripts and styles.
 */
(function () {
  "use strict";

  // ------------------------------------------------------------------ DOM helpers

  function h(tag, props, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of [].concat(children === undefined ? [] : children)) {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    }
    return node;
  }

  function button(label, onclick, cls, title) {
    return h("button", { type: "button", class: "hb-button " + (cls || ""), title: title, text: label,
      onclick: function (e) { e.preventDefault(); onclick(); } });
  }

  // A <select>; the current value is always an option, so nothing is lost on display.
  function select(options, current, onchange, cls) {
    const node = h("select", { class: cls || "" });
    const values = options.map(function (o) { return o.value; });
    if (current !== undefined && current !== null && values.indexOf(String(current)) < 0) {
      options = [{ value: String(current), label: String(current) + " (not in the list)" }].concat(options);
    }
    for (const o of options) node.append(h("option", { value: o.value, text: o.label }));
    if (current !== undefined && current !== null) node.value = String(current);
    node.addEventListener("change", function () { onchange(node.value); });
    return node;
  }

  function textInput(value, oninput, placeholder, cls, type) {
    const node = h("input", { type: type || "text", class: "hb-input " + (cls || ""), placeholder: placeholder });
    node.value = value === undefined || value === null ? "" : String(value);
    node.addEventListener("input", function () { oninput(node.value); });
    return node;
  }

  // ------------------------------------------------------------------ values

  const DURATION = /^P(?!$)(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/;
  const UNITS = ["week", "day", "hour", "minute", "second"];

  // "P1DT2H" -> "1 day 2 hours"; null when it is not a duration Herald accepts.
  function durationText(text) {
    const match = DURATION.exec(String(text === undefined || text === null ? "" : text).trim());
    if (!match) return null;
    const parts = [];
    match.slice(1).forEach(function (n, i) {
      if (n && Number(n) !== 0) parts.push(Number(n) + " " + UNITS[i] + (Number(n) === 1 ? "" : "s"));
    });
    return parts.length ? parts.join(" ") : null;
  }

  function durationInput(value, onchange) {
    const echo = h("span", { class: "hb-echo" });
    function show(v) {
      const words = durationText(v);
      echo.textContent = words ? "= " + words : "ISO 8601, e.g. P7D (7 days), PT2H (2 hours)";
      echo.classList.toggle("hb-echo-bad", !words && !!v);
    }
    const input = textInput(value, function (v) { show(v); onchange(v); }, "P7D", "hb-duration");
    show(value);
    return h("span", { class: "hb-duration-box" }, [input, echo]);
  }

  // Untyped values (attributes, data paths): numbers and booleans as such, the rest as text.
  function parseLoose(text, allowNull) {
    const t = text.trim();
    if (/^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(t)) return Number(t);
    if (t === "true") return true;
    if (t === "false") return false;
    if (allowNull && t === "null") return null;
    return text;
  }

  function showLoose(value) {
    if (value === undefined) return "";
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  const UTC_MINUTE = /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?Z$/;

  function scalarInput(vtype, value, set) {
    if (vtype === "number" || vtype === "integer") {
      const node = textInput(value, function (v) { set(v === "" ? null : Number(v)); }, "number", "hb-number", "number");
      node.setAttribute("step", vtype === "integer" ? "1" : "any");
      if (vtype === "integer") node.setAttribute("min", "0");
      return node;
    }
    if (vtype === "datetime") {
      if (value === undefined || value === null || value === "" || UTC_MINUTE.test(value)) {
        const node = textInput(value ? String(value).slice(0, 19).replace(/Z$/, "") : "", function (v) {
          set(v ? (v.length === 16 ? v + ":00" : v) + "Z" : "");
        }, "", "hb-datetime", "datetime-local");
        node.setAttribute("step", "1");
        return h("span", { class: "hb-datetime-box" }, [node, h("span", { class: "hb-echo", text: "UTC" })]);
      }
      return textInput(value, set, "2026-01-31T09:00:00Z", "hb-datetime-text");
    }
    if (vtype === "boolean") {
      return select([{ value: "true", label: "true" }, { value: "false", label: "false" }],
        typeof value === "boolean" ? String(value) : value, function (v) { set(v === "true" ? true : v === "false" ? false : v); }, "hb-boolean");
    }
    if (vtype === "any") return textInput(showLoose(value), function (v) { set(parseLoose(v, false)); }, "value");
    return textInput(value, set, "value");
  }

  // Rows of values (in / not in, tags): each row one value, "+" adds one.
  function listEditor(values, vtype, onchange) {
    const box = h("span", { class: "hb-list" });
    function draw() {
      box.replaceChildren();
      values.forEach(function (value, i) {
        box.append(h("span", { class: "hb-list-item" }, [
          scalarInput(vtype, value, function (v) { values[i] = v; onchange(); }),
          button("−", function () { values.splice(i, 1); onchange(); draw(); }, "hb-list-remove", "Remove this value"),
        ]));
      });
      box.append(button("+ value", function () { values.push(vtype === "number" || vtype === "integer" ? null : ""); onchange(); draw(); }, "hb-list-add"));
    }
    draw();
    return box;
  }

  function rawJson(value, onvalid, cls) {
    const area = h("textarea", { class: "hb-raw " + (cls || ""), rows: 2 });
    area.value = JSON.stringify(value);
    area.addEventListener("change", function () {
      try { onvalid(JSON.parse(area.value)); area.classList.remove("hb-invalid"); } catch (e) { area.classList.add("hb-invalid"); }
    });
    return area;
  }

  // ------------------------------------------------------------------ errors at nodes

  function errorList(errors, path, own) {
    const messages = [];
    for (const [key, list] of Object.entries(errors)) {
      if (!own(key)) continue;
      for (const message of list) messages.push(key === path ? message : key.slice(path.length + 1) + ": " + message);
    }
    if (!messages.length) return null;
    return h("ul", { class: "errorlist hb-errors" }, messages.map(function (m) { return h("li", { text: m }); }));
  }

  // ------------------------------------------------------------------ the condition tree

  const GROUPS = ["all", "any", "not"];

  function isObject(v) { return v !== null && typeof v === "object" && !Array.isArray(v); }

  function isGroup(node) {
    if (!isObject(node)) return false;
    const keys = Object.keys(node);
    if (keys.length !== 1) return false;
    if (keys[0] === "not") return isObject(node.not);
    return (keys[0] === "all" || keys[0] === "any") && Array.isArray(node[keys[0]]);
  }

  function leafKind(node, cat) {
    if (!isObject(node) || GROUPS.some(function (g) { return g in node; })) return "raw";
    const offered = cat.subjects.map(function (s) { return s.kind; });
    let kind = "raw";
    if (typeof node.property === "string") kind = "property";
    else if (typeof node.event === "string") kind = node.event === "data" || node.event.indexOf("data.") === 0 ? "event_data" : "event";
    else if (typeof node.customer === "string") {
      if (node.customer === "tags") kind = "customer_tag";
      else if (node.customer.indexOf("attributes.") === 0) kind = "customer_attribute";
      else kind = "customer";
    } else if (isObject(node.count) && typeof node.count.event_type === "string") kind = "count";
    else if (typeof node.first === "string") kind = "first";
    else if (typeof node.segment === "string") kind = "segment";
    else if (isObject(node.aggregate)) kind = "aggregate";
    else if (typeof node.last === "string") kind = "last";
    return offered.indexOf(kind) >= 0 ? kind : "raw";
  }

  function conditionBuilder(box, textarea, cat, errors) {
    const root = box.dataset.root || "conditions";
    const triggers = box.dataset.triggers ? document.querySelector(box.dataset.triggers) : null;
    const ui = h("div", { class: "hb-tree" });
    let tree = {};

    function sync() { textarea.value = JSON.stringify(tree, null, 2); }
    function render() { ui.replaceChildren(renderRoot()); sync(); }

    function eventTypes() {
      return cat.event_types.map(function (t) { return { value: t.key, label: t.name ? t.name + " (" + t.key + ")" : t.key }; });
    }

    function triggerIds() {
      if (!triggers) return cat.event_types.map(function (t) { return t.id; });
      return Array.from(triggers.selectedOptions).map(function (o) { return o.value; });
    }

    // The properties the chosen trigger types declare, with their value types.
    function properties() {
      const chosen = triggerIds();
      const found = new Map();
      for (const type of cat.event_types) {
        if (chosen.indexOf(type.id) < 0) continue;
        for (const p of type.properties) {
          const seen = found.get(p.id);
          if (!seen) found.set(p.id, { id: p.id, name: p.name, type: p.type });
          else if (seen.type !== p.type) seen.type = "any"; // declared differently by two triggers
        }
      }
      return Array.from(found.values());
    }

    function fieldType(list, path) {
      const field = list.find(function (f) { return f.path === path; });
      return field ? field.type : "any";
    }

    function leafType(kind, node) {
      if (kind === "property") {
        const prop = properties().find(function (p) { return p.id === node.property; });
        return prop ? prop.type : "any";
      }
      if (kind === "event") return fieldType(cat.event_fields, node.event);
      if (kind === "customer") return fieldType(cat.customer_fields, node.customer);
      if (kind === "customer_tag") return "list";
      if (kind === "count" || kind === "aggregate") return kind;
      if (kind === "last") return "recency";
      return "any";
    }

    function opsFor(type) {
      if (type === "count" || type === "aggregate") return cat.count_ops.map(function (op) { return { value: op, label: cat.operators[op].label }; });
      if (type === "recency") return cat.recency_ops;
      return Object.keys(cat.operators)
        .filter(function (op) { return cat.operators[op].types.indexOf(type) >= 0; })
        .map(function (op) { return { value: op, label: cat.operators[op].label }; });
    }

    function shapeOf(type, op) {
      if (type === "recency") return "duration";
      const operator = cat.operators[op];
      return operator ? operator.shape : "scalar";
    }

    function valueType(kind, node, type) {
      if (kind === "count") return "integer";
      if (kind === "aggregate") return node.aggregate.fn === "count" ? "integer" : "number";
      if (type === "list" || type === "object") return "string";
      return type;
    }

    function emptyValue(shape, vtype) {
      const blank = vtype === "number" || vtype === "integer" ? null : vtype === "boolean" ? true : "";
      if (shape === "pair") return [blank, blank];
      if (shape === "list") return [blank];
      if (shape === "duration") return "P7D";
      return blank;
    }

    // After the subject changed: keep the operator if it still applies, else the first that does.
    function fitOperator(kind, node) {
      if (kind === "first" || kind === "segment") return;
      const type = leafType(kind, node);
      const ops = opsFor(type).map(function (o) { return o.value; });
      if (ops.indexOf(node.op) >= 0) return;
      node.op = ops[0];
      const shape = shapeOf(type, node.op);
      if (shape === "none") delete node.value;
      else node.value = emptyValue(shape, valueType(kind, node, type));
    }

    function defaultLeaf(kind) {
      kind = kind || cat.subjects[0].kind;
      const firstType = cat.event_types.length ? cat.event_types[0].key : "";
      const props = properties();
      let node;
      if (kind === "property") node = { property: props.length ? props[0].id : "" };
      else if (kind === "event") node = { event: cat.event_fields[0].path };
      else if (kind === "event_data") node = { event: "data." };
      else if (kind === "customer") node = { customer: cat.customer_fields[0].path };
      else if (kind === "customer_attribute") node = { customer: "attributes." };
      else if (kind === "customer_tag") node = { customer: "tags", op: "contains", value: "" };
      else if (kind === "count") node = { count: { event_type: firstType, within: "P7D" } };
      else if (kind === "first") return { first: firstType };
      else if (kind === "segment") return { segment: cat.segments.length ? cat.segments[0].key : "" };
      else if (kind === "aggregate") node = { aggregate: { event_type: firstType, property: "", fn: cat.aggregate_fns[0] } };
      else if (kind === "last") return { last: firstType, op: cat.recency_ops[0].value, value: "P14D" };
      else node = {};
      fitOperator(kind, node);
      return node;
    }

    function renderRoot() {
      const wrap = h("div", { class: "hb-root" });
      wrap.append(errorList(errors, root, function (k) { return k === root; }) || "");
      if (isObject(tree) && Object.keys(tree).length === 0) {
        wrap.append(h("p", { class: "hb-always", text: "Always: no conditions (the trigger alone decides)." }));
        wrap.append(h("div", { class: "hb-add" }, [
          button("+ Condition", function () { tree = { all: [defaultLeaf()] }; render(); }, "hb-add-leaf"),
          button("+ Group", function () { tree = { any: [defaultLeaf()] }; render(); }, "hb-add-group"),
        ]));
        return wrap;
      }
      wrap.append(renderNode(tree, root, function (n) { tree = n === undefined ? {} : n; render(); }));
      if (!isGroup(tree)) {
        wrap.append(h("div", { class: "hb-add" }, [button("+ Condition (ALL of)", function () { tree = { all: [tree, defaultLeaf()] }; render(); }, "hb-add-leaf")]));
      }
      return wrap;
    }

    function renderNode(node, path, replace) {
      return isGroup(node) ? renderGroup(node, path, replace) : renderLeaf(node, path, replace);
    }

    function renderGroup(node, path, replace) {
      if ("not" in node) {
        return h("div", { class: "hb-group hb-not", "data-path": path }, [
          h("div", { class: "hb-group-head" }, [
            h("strong", { text: "NOT" }),
            h("span", { class: "hb-hint", text: "true when the condition below is false" }),
            button("Remove NOT", function () { replace(node.not); }, "hb-unwrap"),
            button("×", function () { replace(undefined); }, "hb-remove", "Remove"),
          ]),
          errorList(errors, path, function (k) { return k === path; }),
          renderNode(node.not, path + ".not", function (n) {
            if (n === undefined) { replace(undefined); return; }
            node.not = n;
            render();
          }),
        ]);
      }
      const key = "all" in node ? "all" : "any";
      const list = node[key];
      const items = h("ol", { class: "hb-children" });
      list.forEach(function (child, i) {
        items.append(h("li", null, renderNode(child, path + "." + key + "[" + i + "]", function (n) {
          if (n === undefined) list.splice(i, 1); else list[i] = n;
          if (!list.length) replace(undefined); else render();
        })));
      });
      return h("div", { class: "hb-group hb-" + key, "data-path": path }, [
        h("div", { class: "hb-group-head" }, [
          select([{ value: "all", label: "ALL of these" }, { value: "any", label: "ANY of these" }], key, function (v) {
            const swapped = {};
            swapped[v] = list;
            replace(swapped);
          }, "hb-group-kind"),
          button("NOT", function () { replace({ not: node }); }, "hb-negate", "Negate this group"),
          button("×", function () { replace(undefined); }, "hb-remove", "Remove this group"),
        ]),
        errorList(errors, path, function (k) { return k === path || k === path + "." + key; }),
        items,
        h("div", { class: "hb-add" }, [
          button("+ Condition", function () { list.push(defaultLeaf()); render(); }, "hb-add-leaf"),
          button("+ Group", function () { const g = {}; g[key === "all" ? "any" : "all"] = [defaultLeaf()]; list.push(g); render(); }, "hb-add-group"),
        ]),
      ]);
    }

    function targetEditor(kind, node) {
      const changed = function () { fitOperator(kind, node); render(); };
      if (kind === "property") {
        const props = properties();
        if (!props.length) {
          return [textInput(node.property, function (v) { node.property = v; sync(); }, "property id", "hb-target"),
            h("span", { class: "hb-hint", text: "choose trigger types to list their properties" })];
        }
        return [select(props.map(function (p) { return { value: p.id, label: (p.name || p.id) + " (" + p.type + ")" }; }),
          node.property, function (v) { node.property = v; changed(); }, "hb-target")];
      }
      if (kind === "event" || kind === "customer") {
        const fields = kind === "event" ? cat.event_fields : cat.customer_fields;
        return [select(fields.map(function (f) { return { value: f.path, label: f.label + " (" + f.type + ")" }; }),
          node[kind], function (v) { node[kind] = v; changed(); }, "hb-target")];
      }
      if (kind === "event_data" || kind === "customer_attribute") {
        const subject = kind === "event_data" ? "event" : "customer";
        const prefix = kind === "event_data" ? "data." : "attributes.";
        return [h("span", { class: "hb-prefix", text: prefix }),
          textInput(node[subject].slice(prefix.length), function (v) { node[subject] = prefix + v; sync(); }, "path, e.g. plan or address.city", "hb-target")];
      }
      if (kind === "customer_tag") return [];
      if (kind === "count") {
        const parts = [h("span", { text: "of" }), select(eventTypes(), node.count.event_type, function (v) { node.count.event_type = v; sync(); }, "hb-target")];
        return parts.concat(withinEditor(node.count));
      }
      if (kind === "aggregate") {
        const spec = node.aggregate;
        return [
          select(cat.aggregate_fns.map(function (f) { return { value: f, label: f }; }), spec.fn, function (v) { spec.fn = v; render(); }, "hb-fn"),
          h("span", { text: "of" }),
          textInput(spec.property, function (v) { spec.property = v; sync(); }, "property id", "hb-target"),
          h("span", { text: "in" }),
          select(eventTypes(), spec.event_type, function (v) { spec.event_type = v; sync(); }, "hb-target-type"),
        ].concat(withinEditor(spec));
      }
      if (kind === "first") {
        const isFirst = node.value !== false;
        return [select(eventTypes(), node.first, function (v) { node.first = v; sync(); }, "hb-target"),
          select([{ value: "true", label: "is the customer's first" }, { value: "false", label: "is not the customer's first" }],
            String(isFirst), function (v) {
              if (v === "true" && !("op" in node)) delete node.value; else node.value = v === "true";
              sync();
            }, "hb-first")];
      }
      if (kind === "segment") {
        return [select(cat.segments.map(function (s) { return { value: s.key, label: s.name ? s.name + " (" + s.key + ")" : s.key }; }),
          node.segment, function (v) { node.segment = v; sync(); }, "hb-target")];
      }
      if (kind === "last") return [select(eventTypes(), node.last, function (v) { node.last = v; sync(); }, "hb-target")];
      return [];
    }

    // A count's (or aggregate's) window: required for workflows, "all time" allowed in segments.
    function withinEditor(spec) {
      const parts = [h("span", { text: "within" })];
      if (cat.within_optional) {
        parts.push(select([{ value: "window", label: "the last" }, { value: "all", label: "all time" }],
          "within" in spec ? "window" : "all", function (v) {
            if (v === "all") delete spec.within; else spec.within = "P30D";
            render();
          }, "hb-window"));
        if (!("within" in spec)) return parts;
      }
      parts.push(durationInput(spec.within, function (v) { spec.within = v; sync(); }));
      return parts;
    }

    function valueEditor(kind, node, type) {
      if (kind === "first" || kind === "segment") return [];
      const shape = shapeOf(type, node.op);
      const vtype = valueType(kind, node, type);
      const set = function (v) { node.value = v; sync(); };
      if (shape === "none") return [];
      if (shape === "duration") return [durationInput(node.value, set)];
      if (shape === "regex") return [textInput(node.value, set, "regular expression", "hb-value")];
      if (shape === "pair") {
        if (!Array.isArray(node.value) || node.value.length !== 2) return [rawJson(node.value, function (v) { node.value = v; render(); }, "hb-value")];
        return [scalarInput(vtype, node.value[0], function (v) { node.value[0] = v; sync(); }), h("span", { text: "and" }),
          scalarInput(vtype, node.value[1], function (v) { node.value[1] = v; sync(); })];
      }
      if (shape === "list") {
        if (!Array.isArray(node.value)) return [rawJson(node.value, function (v) { node.value = v; render(); }, "hb-value")];
        return [listEditor(node.value, vtype, sync)];
      }
      if (isObject(node.value) || Array.isArray(node.value)) return [rawJson(node.value, function (v) { node.value = v; render(); }, "hb-value")];
      return [scalarInput(vtype, node.value, set)];
    }

    function renderLeaf(node, path, replace) {
      const kind = leafKind(node, cat);
      const row = h("div", { class: "hb-leaf-row" });
      if (kind === "raw") {
        row.append(h("span", { class: "hb-hint", text: "Condition (JSON):" }), rawJson(node, function (v) { replace(v); }, "hb-raw-leaf"));
      } else {
        row.append(select(cat.subjects.map(function (s) { return { value: s.kind, label: s.label }; }), kind,
          function (v) { replace(defaultLeaf(v)); }, "hb-subject"));
        row.append.apply(row, targetEditor(kind, node));
        if (kind !== "first" && kind !== "segment") {
          const type = leafType(kind, node);
          row.append(select(opsFor(type), node.op, function (v) {
            const before = shapeOf(type, node.op);
            node.op = v;
            const after = shapeOf(type, v);
            if (after === "none") delete node.value;
            else if (after !== before || !("value" in node)) node.value = emptyValue(after, valueType(kind, node, type));
            render();
          }, "hb-op"));
          row.append.apply(row, valueEditor(kind, node, type));
        }
      }
      row.append(button("NOT", function () { replace({ not: node }); }, "hb-negate", "Negate this condition"),
        button("×", function () { replace(undefined); }, "hb-remove", "Remove this condition"));
      return h("div", { class: "hb-leaf", "data-path": path, "data-kind": kind }, [
        row, errorList(errors, path, function (k) { return k === path || k.indexOf(path + ".") === 0; }),
      ]);
    }

    if (triggers) triggers.addEventListener("change", render);
    return {
      ui: ui,
      load: function (value) { tree = value === null || value === undefined ? {} : value; render(); },
      value: function () { return tree; },
    };
  }

  // ------------------------------------------------------------------ the action list

  function actionsBuilder(box, textarea, cat, errors) {
    const root = box.dataset.root || "actions";
    const ui = h("div", { class: "hb-actions" });
    let actions = [];

    function sync() { textarea.value = JSON.stringify(actions, null, 2); }
    function render() { ui.replaceChildren(renderAll()); sync(); }

    function definition(type) { return cat.actions.find(function (a) { return a.type === type; }); }

    function eventTypes() {
      return cat.event_types.map(function (t) { return { value: t.key, label: t.name ? t.name + " (" + t.key + ")" : t.key }; });
    }

    function fresh(type) {
      const spec = { type: type };
      for (const field of definition(type).fields) {
        if (field.required) spec[field.name] = blank(field.kind);
      }
      return spec;
    }

    function blank(kind) {
      if (kind === "list") return [""];
      if (kind === "keyvalue" || kind === "json") return {};
      if (kind === "records") return [];
      if (kind === "duration") return "P1D";
      if (kind === "event_type") return cat.event_types.length ? cat.event_types[0].key : "";
      return "";
    }

    function keyValueRows(spec, name) {
      const rows = Object.entries(isObject(spec[name]) ? spec[name] : {});
      if (!rows.length) rows.push(["", ""]);
      const box = h("div", { class: "hb-rows hb-keyvalue" });
      function write() {
        const object = {};
        for (const [key, value] of rows) if (key !== "") object[key] = value;
        spec[name] = object;
        sync();
      }
      function draw() {
        box.replaceChildren();
        rows.forEach(function (row, i) {
          box.append(h("div", { class: "hb-row" }, [
            textInput(row[0], function (v) { row[0] = v; write(); }, "key", "hb-key"),
            textInput(showLoose(row[1]), function (v) { row[1] = parseLoose(v, true); write(); }, "value (null removes it)", "hb-val"),
            button("−", function () { rows.splice(i, 1); write(); draw(); }, "hb-row-remove", "Remove this row"),
          ]));
        });
        box.append(button("+ row", function () { rows.push(["", ""]); draw(); }, "hb-row-add"));
      }
      draw();
      return box;
    }

    function recordRows(spec) {
      if (!Array.isArray(spec.property_records)) spec.property_records = [];
      const records = spec.property_records;
      const type = cat.event_types.find(function (t) { return t.key === spec.event_type || t.id === spec.event_type; });
      const listId = "hb-props-" + Math.random().toString(36).slice(2);
      const box = h("div", { class: "hb-rows hb-records" }, [
        h("datalist", { id: listId }, (type ? type.properties : []).map(function (p) { return h("option", { value: p.id, text: p.type }); })),
      ]);
      records.forEach(function (record, i) {
        const key = textInput(record.property_id, function (v) { record.property_id = v; sync(); }, "property", "hb-key");
        key.setAttribute("list", listId);
        box.append(h("div", { class: "hb-row" }, [key,
          textInput(showLoose(record.property_value), function (v) { record.property_value = parseLoose(v, false); sync(); }, "value", "hb-val"),
          button("−", function () { records.splice(i, 1); render(); }, "hb-row-remove", "Remove this value")]));
      });
      box.append(button("+ property value", function () { records.push({ property_id: "", property_value: "" }); render(); }, "hb-row-add"));
      return box;
    }

    function fieldEditor(field, spec) {
      const set = function (v) { spec[field.name] = v; sync(); };
      if (field.kind === "url") return textInput(spec[field.name], set, "https://…", "hb-url", "url");
      if (field.kind === "duration") return durationInput(spec[field.name], set);
      if (field.kind === "event_type") return select(eventTypes(), spec[field.name], function (v) { spec[field.name] = v; render(); }, "hb-event-type");
      if (field.kind === "list") {
        if (!Array.isArray(spec[field.name])) return rawJson(spec[field.name], function (v) { spec[field.name] = v; render(); });
        return listEditor(spec[field.name], "string", sync);
      }
      if (field.kind === "keyvalue") return keyValueRows(spec, field.name);
      if (field.kind === "records") return recordRows(spec);
      return rawJson(spec[field.name], function (v) { spec[field.name] = v; sync(); }, "hb-json");
    }

    function renderAction(spec, i) {
      const path = root + "[" + i + "]";
      const def = isObject(spec) ? definition(spec.type) : null;
      const head = h("div", { class: "hb-action-head" }, [
        h("span", { class: "hb-action-number", text: String(i + 1) + "." }),
        select(cat.actions.map(function (a) { return { value: a.type, label: a.label }; }), isObject(spec) ? spec.type : "",
          function (v) { actions[i] = fresh(v); render(); }, "hb-action-type"),
        i > 0 ? button("↑", function () { actions.splice(i - 1, 0, actions.splice(i, 1)[0]); render(); }, "hb-up", "Move up") : null,
        i < actions.length - 1 ? button("↓", function () { actions.splice(i + 1, 0, actions.splice(i, 1)[0]); render(); }, "hb-down", "Move down") : null,
        button("×", function () { actions.splice(i, 1); render(); }, "hb-remove", "Remove this action"),
      ]);
      const card = h("div", { class: "hb-action", "data-path": path, "data-type": def ? spec.type : "raw" }, [head]);
      const own = function (k) { return k === path || k.indexOf(path + ".") === 0; };
      if (!def) {
        card.append(rawJson(spec, function (v) { actions[i] = v; render(); }, "hb-raw-action"));
        card.append(errorList(errors, path, own) || "");
        return card;
      }
      if (def.help) card.append(h("p", { class: "hb-hint", text: def.help }));
      card.append(errorList(errors, path, function (k) { return k === path || k === path + ".type"; }) || "");
      for (const field of def.fields) {
        if (field.kind === "hidden") continue;
        const fieldPath = path + "." + field.name;
        if (!(field.name in spec)) {
          if (!field.required) {
            card.append(h("div", { class: "hb-field hb-optional" }, [button("+ " + field.label, function () { spec[field.name] = blank(field.kind); render(); }, "hb-add-field")]));
            continue;
          }
          spec[field.name] = blank(field.kind);
        }
        card.append(h("div", { class: "hb-field hb-field-" + field.name }, [
          h("label", { text: field.label }),
          fieldEditor(field, spec),
          field.required ? null : button("−", function () { delete spec[field.name]; render(); }, "hb-remove-field", "Remove " + field.label),
          errorList(errors, fieldPath, function (k) { return k === fieldPath || k.indexOf(fieldPath + ".") === 0; }),
        ]));
      }
      if (cat.exempt_flag) {
        // Transactional messages: the workflow's caps and quiet hours do not apply.
        const flag = cat.exempt_flag.name;
        const box = h("input", { type: "checkbox", class: "hb-exempt", checked: spec[flag] === true,
          onchange: function (e) { if (e.target.checked) spec[flag] = true; else delete spec[flag]; sync(); } });
        card.append(h("div", { class: "hb-field hb-field-" + flag }, [
          h("label", {}, [box, " " + cat.exempt_flag.label]),
          errorList(errors, path + "." + flag, function (k) { return k === path + "." + flag; }),
        ]));
      }
      return card;
    }

    function renderAll() {
      const wrap = h("div", { class: "hb-root" }, [errorList(errors, root, function (k) { return k === root; }) || ""]);
      if (!actions.length) wrap.append(h("p", { class: "hb-always", text: "No actions yet." }));
      actions.forEach(function (spec, i) { wrap.append(renderAction(spec, i)); });
      const choice = select(cat.actions.map(function (a) { return { value: a.type, label: a.label }; }), cat.actions[0].type, function () {}, "hb-new-action");
      wrap.append(h("div", { class: "hb-add" }, [choice, button("+ Add action", function () { actions.push(fresh(choice.value)); render(); }, "hb-add-action")]));
      return wrap;
    }

    return {
      ui: ui,
      load: function (value) { actions = value === null || value === undefined ? [] : value; render(); },
      value: function () { return actions; },
    };
  }

  // ------------------------------------------------------------------ mounting

  const BUILDERS = { conditions: conditionBuilder, actions: actionsBuilder };

  function readJson(id) {
    const node = id ? document.getElementById(id) : null;
    return node ? JSON.parse(node.textContent) : {};
  }

  function mount(box) {
    if (box.heraldBuilder) return box.heraldBuilder;
    const textarea = box.querySelector("textarea");
    const cat = readJson(box.dataset.catalogue);
    const builder = BUILDERS[box.dataset.builder](box, textarea, cat, readJson(box.dataset.errors));
    const problem = h("p", { class: "hb-json-problem hb-echo-bad" });
    let advanced = false;
    const toggle = button("Advanced: edit as JSON", function () { setAdvanced(!advanced); }, "hb-toggle");

    function setAdvanced(on) {
      if (!on) {
        let parsed;
        try {
          parsed = textarea.value.trim() === "" ? null : JSON.parse(textarea.value);
        } catch (e) {
          problem.textContent = "The JSON does not parse (" + e.message + "); fix it to go back to the builder.";
          return false;
        }
        builder.load(parsed);
      }
      problem.textContent = "";
      advanced = on;
      box.classList.toggle("hb-advanced", on);
      toggle.textContent = on ? "Back to the builder" : "Advanced: edit as JSON";
      return true;
    }

    box.insertBefore(h("div", { class: "hb-toolbar" }, [toggle, problem]), textarea);
    box.insertBefore(builder.ui, textarea);
    if (!setAdvanced(false)) setAdvanced(true);
    box.heraldBuilder = { value: builder.value, load: builder.load, setAdvanced: setAdvanced };
    return box.heraldBuilder;
  }

  // Any duration input outside a builder (re-entry period, waits) gets the same readable echo.
  function echoDurations() {
    document.querySelectorAll("input.herald-duration").forEach(function (input) {
      if (input.dataset.echo) return;
      input.dataset.echo = "1";
      const echo = h("span", { class: "hb-echo" });
      const show = function () {
        const words = durationText(input.value);
        echo.textContent = words ? "= " + words : input.value ? "not a duration (e.g. P7D, PT2H)" : "";
        echo.classList.toggle("hb-echo-bad", !words && !!input.value);
      };
      input.addEventListener("input", show);
      input.after(echo);
      show();
    });
    // A re-entry choice shows its period only for "once per customer per …".
    document.querySelectorAll("[data-reentry]").forEach(function (box) {
      const choice = box.querySelector("select");
      const period = box.querySelector(".herald-reentry-period");
      const update = function () { period.classList.toggle("hb-hidden", choice.value !== "per"); };
      choice.addEventListener("change", update);
      update();
    });
  }

  function start() {
    document.querySelectorAll(".herald-builder").forEach(mount);
    echoDurations();
  }

  window.HeraldBuilder = { mount: mount, durationText: durationText, parseLoose: parseLoose, start: start };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
