// AllowedRegistries, an admission policy in JavaScript, built into a
// component of the WIT world `wasmkube:admission/admission-policy` by
// componentize-js.
//
// Pods run only images from the registries its settings allow, and get the
// default labels they lack. Settings: `{"registries":
// ["registry.example:5000"], "defaultLabels": {"team": "unassigned"}}`. An
// image names its registry by its first part when that part has a `.` or a
// `:` or is `localhost`; other images are Docker Hub's (`docker.io`). The
// same policy is in Rust (../rust) and Python (../python).
//
// WIT to JavaScript: a record is an object with camelCase fields, an enum
// case its name (`create`), an option a value or undefined; a resource's
// methods are methods; a function returning a result returns its ok value
// and throws its error.

import { settings as hostSettings } from "wasmkube:admission/host@0.1.0";

function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// The allowed registries and default labels; throws what is wrong.
function parseSettings(text) {
  let settings;
  try {
    settings = JSON.parse(text);
  } catch (e) {
    throw `settings: ${e}`;
  }
  const registries = isObject(settings) ? settings.registries : undefined;
  if (!Array.isArray(registries)) {
    throw "registries: a list of registries is required";
  }
  if (!registries.every((r) => typeof r === "string")) {
    throw "registries: each is a string";
  }
  const labels = settings.defaultLabels ?? {};
  if (!isObject(labels) || !Object.values(labels).every((v) => typeof v === "string")) {
    throw "defaultLabels: a map of strings";
  }
  return { registries, labels };
}

function registryOf(image) {
  const slash = image.indexOf("/");
  if (slash >= 0) {
    const first = image.slice(0, slash);
    if (first.includes(".") || first.includes(":") || first === "localhost") {
      return first;
    }
  }
  return "docker.io";
}

// The value at `pointer` in the object written, or undefined.
function field(request, pointer) {
  const found = request.object?.get(pointer);
  return found === undefined ? undefined : JSON.parse(found);
}

function allow(patch) {
  return {
    allowed: true,
    status: undefined,
    warnings: [],
    patch: patch && patch.length > 0 ? JSON.stringify(patch) : undefined,
  };
}

function forbid(request, why) {
  const { group, resource } = request.resource;
  const named = group ? `${resource}.${group}` : resource;
  const message = `${named} ${JSON.stringify(request.name)} is forbidden: ${why}`;
  return {
    allowed: false,
    status: { code: 403, reason: "Forbidden", message },
    warnings: [],
    patch: undefined,
  };
}

function podCreate(request) {
  return (
    request.resource.group === "" &&
    request.resource.resource === "pods" &&
    request.subResource === "" &&
    request.operation === "create"
  );
}

export const policy = {
  validateSettings(settings) {
    parseSettings(settings);
  },

  mutate(request) {
    if (!podCreate(request)) {
      return allow();
    }
    const defaults = parseSettings(hostSettings()).labels;
    const labels = field(request, "/metadata/labels");
    if (!isObject(labels)) {
      const any = Object.keys(defaults).length > 0;
      return allow(any ? [{ op: "add", path: "/metadata/labels", value: defaults }] : []);
    }
    const patch = Object.keys(defaults)
      .sort()
      .filter((key) => !Object.hasOwn(labels, key))
      .map((key) => ({
        op: "add",
        path: "/metadata/labels/" + key.replaceAll("~", "~0").replaceAll("/", "~1"),
        value: defaults[key],
      }));
    return allow(patch);
  },

  validate(request) {
    if (!podCreate(request)) {
      return allow();
    }
    const { registries } = parseSettings(hostSettings());
    for (const kind of ["initContainers", "containers"]) {
      for (const container of field(request, `/spec/${kind}`) ?? []) {
        const image = container.image ?? "";
        if (!registries.includes(registryOf(image))) {
          return forbid(
            request,
            `image ${JSON.stringify(image)} of container ${JSON.stringify(container.name ?? "")} ` +
              `is not from an allowed registry (${registries.join(", ")})`,
          );
        }
      }
    }
    return allow();
  },
};
