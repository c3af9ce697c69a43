"""A stateful Kubernetes API emulator: kmock's ``KubernetesEmulator`` with the API server's semantics.

On top of kmock's discovery and object store it adds what a controller such as kopf relies on:
uid, a global resourceVersion with 409 on stale writes, generation, 201 on create, namespaces from
the URL, generateName, PUT, status-subresource isolation, merge / JSON / strategic-merge patches,
finalizers with deletionTimestamp, ownerReference garbage collection, label and field selectors,
CRD registration with schema defaulting, pruning and validation (422 naming the field), the scale
subresource, and watches (see :mod:`.watching`). No controllers run here except the garbage
collector: tests drive Pod and Job status themselves.
"""

from __future__ import annotations

import copy
import random
import re
import warnings
from typing import Any

import attrs
import yaml
from kmock import KubernetesEmulator, KubernetesError, KubernetesScaffold, Request, Response, resource
from kmock._internal import enums

from . import crds, meta, openapi, patches, paths, schema, tables, watching
from .builtins import Builtins
from .journal import Journal

paths.install()

CRD_RESOURCE = resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
NAMESPACES = resource("", "v1", "namespaces")
FOREGROUND_DELETION = "foregroundDeletion"
# Kinds whose API default is to orphan dependents when no propagationPolicy is given (legacy batch/v1 Jobs).
ORPHAN_BY_DEFAULT = frozenset({resource("batch", "v1", "jobs")})
ObjKey = tuple[resource, str | None, str]


def _status_error(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> KubernetesError:
    return KubernetesError(status=code, reason=reason, message=message, details=details or {})


@attrs.define(kw_only=True)
class Emulator(KubernetesEmulator):
    """The emulator handler; serve it with :class:`kmock.Server` or :class:`.server.EmulatorThread`."""

    bookmark_interval: float = 5.0  # seconds between BOOKMARK events on watches that allow them
    server_version: tuple[int, int] = (1, 30)
    journal: Journal = attrs.field(factory=Journal)
    schemas: dict[resource, dict[str, Any]] = attrs.field(factory=dict, init=False)
    scales: dict[resource, crds.ScalePaths] = attrs.field(factory=lambda: dict(crds.BUILTIN_SCALE), init=False)
    request_history: int = 2000  # requests kept for kmock-style assertions (bounded: long runs stay small)
    # Set to a Counter to count requests by (User-Agent product, verb, plural, subresource, field manager).
    request_counts: Any = None
    # Container output served by GET pods/<name>/log (tests play the kubelet): (namespace, pod) -> text.
    pod_logs: dict[tuple[str, str], str] = attrs.field(factory=dict, init=False)
    printer_columns: dict[resource, list[dict[str, Any]]] = attrs.field(factory=dict, init=False)
    builtins: Builtins = attrs.field(factory=Builtins, init=False)
    _by_uid: dict[str, ObjKey] = attrs.field(factory=dict, init=False)
    _by_res: dict[resource, dict[ObjKey, dict[str, Any]]] = attrs.field(factory=dict, init=False)  # live state
    _by_owner: dict[str, set[ObjKey]] = attrs.field(factory=dict, init=False)
    _rng: random.Random = attrs.field(factory=random.Random, init=False)
    _builtin_payloads: set[int] = attrs.field(factory=set, init=False)

    def __attrs_post_init__(self) -> None:
        KubernetesScaffold.__attrs_post_init__(self)  # discovery only; the stock state handling is replaced
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # kmock reads its bundle with a deprecated API
            self.resources.load_bundled()
        self.fallback[self._is_object_request] << self._dispatch
        self.fallback["get /openapi/v3"] << (lambda request: openapi.index(self.resources._resources))
        self.fallback["get", re.compile(r"/openapi/v3/.+")] << self._serve_openapi
        self._builtin_payloads = {id(p) for p in self._payloads}
        for name in ("default", "kube-system", "kube-public"):
            self.ensure_namespace(name)

    async def _handle(self, request: Request) -> Any:
        # Skip KubernetesEmulator._handle (its naive state tracking); all state changes happen in _dispatch.
        if len(self._requests) > 2 * self.request_history:
            del self._requests[:-self.request_history]
            for payload in self._payloads:
                del payload._requests[:-self.request_history]
        if self.request_counts is not None:
            self._count_request(request)
        # Fast path: kmock matches a request by filtering the whole request history through every view,
        # which is quadratic over a long run. Without user-defined reactions, dispatch object requests directly.
        if self._is_object_request(request) and all(id(p) in self._builtin_payloads for p in self._payloads):
            response = await self._dispatch(request)
            return await response(request)
        return await KubernetesScaffold._handle(self, request)

    def _count_request(self, request: Request) -> None:
        agent = (request.headers.get("User-Agent") or "").split("/")[0]
        verb = str(request.method.value if hasattr(request.method, "value") else request.method).upper()
        if verb == "GET" and request.params.get("watch") in ("1", "true"):
            verb = "WATCH"
        elif verb == "GET" and request.resource is not None and request.name is None:
            verb = "LIST"
        plural = request.resource.plural if request.resource is not None else request.url.path
        self.request_counts[(agent, verb, plural, request.subresource, request.params.get("fieldManager"))] += 1

    async def _serve_version(self, request: Request) -> Any:
        listing = await super()._serve_version(request)
        if listing.get("groupVersion", "").startswith("/"):  # kmock writes "/v1" for the core group
            listing["groupVersion"] = listing["groupVersion"][1:]
        for entry in listing.get("resources") or []:  # short names and categories belong to the main resource only
            if "/" in entry.get("name", ""):
                entry.pop("shortNames", None)
                entry.pop("categories", None)
        return listing

    async def _serve_openapi(self, request: Request) -> dict[str, Any]:
        document = openapi.group_version(self.resources._resources, request.url.path.removeprefix("/openapi/v3/"))
        if document is None:
            raise _status_error(404, "NotFound", f"no OpenAPI document for {request.url.path}")
        return document

    async def _serve_server_version(self, request: Request) -> dict[str, Any]:
        major, minor = self.server_version
        return {"major": str(major), "minor": str(minor), "gitVersion": f"v{major}.{minor}.0-emulator",
                "platform": "linux/amd64"}

    # ----------------------------------------------------------------------------------------- routing

    @staticmethod
    def _is_object_request(request: Request) -> bool:
        return request.resource is not None and request.resource.plural is not None \
            and request.resource.version is not None

    def info(self, res: resource) -> Any:
        """Discovery info of a served resource, or 404."""
        if res not in self.resources:
            raise _status_error(404, "NotFound", f"the server could not find the requested resource ({res.plural})")
        return self.resources[res]

    async def _dispatch(self, request: Request) -> Response:
        # Always answer with an explicit status: kmock keeps the last status on the (shared) reaction.
        result = self._route(request)
        if isinstance(result, Response):
            return result
        return Response(status=200, payload=result)

    def _route(self, request: Request) -> Any:
        res = request.resource
        assert res is not None
        info = self.info(res)
        ns, name, sub, method = request.namespace, request.name, request.subresource, request.method
        if request.action == enums.action.WATCH:  # a JSON stream (client-go refuses application/octet-stream)
            return Response(status=200, headers={"Content-Type": "application/json"},
                            payload=watching.watch(self, request, res, info))
        if not info.namespaced:
            ns = None
        if request.params.get("fieldValidation") == "Strict" and isinstance(request.data, dict) and (
                method in (enums.method.POST, enums.method.PUT)
                or patches.APPLY_PATCH in request.headers.get("Content-Type", "")):
            self._strict_fields(res, request.data)
        table = method == enums.method.GET and sub is None and tables.wants_table(request.headers.get("Accept"))
        if name is None:
            if method == enums.method.GET:
                listing = watching.list_objects(self, request, res, info)
                if table:
                    return tables.to_table(listing["items"], self.printer_columns.get(res),
                                           listing["metadata"]["resourceVersion"], request.params.get("includeObject"))
                return listing
            if method == enums.method.POST:
                return Response(status=201, payload=self.create(res, request.data, namespace=ns))
            if method == enums.method.DELETE:
                return self.delete_collection(request, res, info, ns)
        else:
            if sub == "log" and res.plural == "pods" and method == enums.method.GET:
                return self._pod_log(res, ns, name, request)
            if sub not in (None, "status", "scale") or (sub and sub not in info.subresources):
                raise _status_error(404, "NotFound", f"the server could not find the requested resource "
                                                     f"({res.plural}/{sub})")
            if method == enums.method.GET:
                obj = self.get(res, ns, name)
                if table:
                    return tables.to_table([obj], self.printer_columns.get(res), obj["metadata"]["resourceVersion"],
                                           request.params.get("includeObject"))
                return crds.scale_of(obj, self.scales[res]) if sub == "scale" else obj
            if method == enums.method.PUT:
                return self._put(res, ns, name, sub, request.data)
            if method == enums.method.PATCH:
                return self._patch(res, ns, name, sub, request)
            if method == enums.method.DELETE:
                return self.delete(res, ns, name, options=request.data, params=request.params)
        raise _status_error(405, "MethodNotAllowed", f"the server does not allow this method on the requested "
                                                     f"resource ({method} {request.url.path})")

    def _pod_log(self, res: resource, ns: str | None, name: str, request: Request) -> Response:
        """``kubectl logs``: the text a test stored in :attr:`pod_logs` (``tailLines`` honoured)."""
        self.get(res, ns, name)  # 404 for a pod that does not exist
        text = self.pod_logs.get((ns or "", name), "")
        tail = request.params.get("tailLines")
        if tail is not None and tail.lstrip("-").isdigit() and int(tail) >= 0:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[len(lines) - int(tail):]) if int(tail) else ""
        return Response(status=200, payload=text.encode(), headers={"Content-Type": "text/plain"})

    # ----------------------------------------------------------------------------------------- reading

    def _live(self, key: ObjKey) -> dict[str, Any] | None:
        return self._by_res.get(key[0], {}).get(key)

    def get(self, res: resource, namespace: str | None, name: str) -> dict[str, Any]:
        """The current state of an object (a copy), or 404."""
        found = self._live((res, namespace, name))
        if found is None:
            raise _status_error(404, "NotFound", f'{res.plural}.{res.group} "{name}" not found'.replace(". ", " "),
                                {"name": name, "group": res.group, "kind": res.plural})
        return copy.deepcopy(found)

    def live_objects(self, res: resource | None = None) -> list[tuple[ObjKey, dict[str, Any]]]:
        """All live objects (optionally of one resource), in creation order; the dicts are read-only."""
        if res is not None:
            return list(self._by_res.get(res, {}).items())
        return [item for by_key in list(self._by_res.values()) for item in by_key.items()]

    # ----------------------------------------------------------------------------------------- writing

    def _store(self, key: ObjKey, new: dict[str, Any], old: dict[str, Any] | None, type_: str) -> dict[str, Any]:
        rv = self.journal.next_rv()
        new["metadata"]["resourceVersion"] = str(rv)
        if key in self.objects._objects:
            history = self.objects._objects[key].history
            history.append(new)
            if len(history) > 8:
                del history[:-8]
        else:
            self.objects._objects[key] = self.Object(new)
        self._by_uid[new["metadata"]["uid"]] = key
        self._by_res.setdefault(key[0], {})[key] = new
        self._index_owners(key, old, new)
        self.journal.record(rv, key[0], type_, new, old)
        return copy.deepcopy(new)

    def _validate(self, res: resource, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        """Metadata checks, builtin-kind rules, then (custom resources) CRD defaulting, pruning and validation."""
        md = obj.get("metadata") or {}
        problems = (meta.name_errors(md.get("name")) if old is None else []) + meta.label_errors(md.get("labels")) \
            + meta.annotation_errors(md.get("annotations")) + self.builtins.errors(res, obj, old)
        causes = [{"reason": "FieldValueInvalid", "message": p, "field": p.split(":")[0]} for p in problems]
        spec_schema = self.schemas.get(res)
        if spec_schema is not None:
            obj = schema.prune(schema.apply_defaults(obj, spec_schema), spec_schema, root=True)
            causes += [{"reason": e.reason, "message": e.message, "field": e.field}
                       for e in schema.validate_object(obj, spec_schema)]
        if res == CRD_RESOURCE:
            causes += [{"reason": "FieldValueInvalid", "message": p, "field": p.split(":")[0]}
                       for p in crds.crd_errors(obj)]
        if causes:
            kind = obj.get("kind") or self.resources[res].kind
            group = f".{res.group}" if res.group else ""
            message = f'{kind}{group} "{md.get("name", "")}" is invalid: ' + ", ".join(c["message"] for c in causes)
            raise _status_error(422, "Invalid", message, {"name": md.get("name"), "group": res.group,
                                                          "kind": kind, "causes": causes})
        return obj

    def create(self, res: resource, body: Any, *, namespace: str | None = None) -> dict[str, Any]:
        """Create an object (POST): fills namespace, name, uid, resourceVersion, generation; 409 if it exists."""
        info = self.info(res)
        if not isinstance(body, dict):
            raise _status_error(400, "BadRequest", "the request body must be a JSON object")
        obj = copy.deepcopy(body)
        md = obj.setdefault("metadata", {})
        api_version = f"{res.group}/{res.version}" if res.group else res.version
        obj.setdefault("apiVersion", api_version)
        obj.setdefault("kind", info.kind)
        if obj["apiVersion"] != api_version or obj["kind"] != info.kind:
            raise _status_error(400, "BadRequest", f"the API version/kind in the data ({obj['apiVersion']}/"
                                                   f"{obj['kind']}) does not match the expected "
                                                   f"{api_version}/{info.kind}")
        if info.namespaced:
            if namespace and md.get("namespace") not in (None, namespace):
                raise _status_error(400, "BadRequest", "the namespace of the provided object does not match the "
                                                       "namespace sent on the request")
            md["namespace"] = namespace or md.get("namespace") or "default"
        else:
            md.pop("namespace", None)
        if not md.get("name") and md.get("generateName"):
            for _ in range(20):
                md["name"] = meta.generate_name(md["generateName"], self._rng)
                if self._live((res, md.get("namespace"), md["name"])) is None:
                    break
        key = (res, md.get("namespace"), md.get("name", ""))
        if info.namespaced and self._live((NAMESPACES, None, md["namespace"])) is None:
            raise _status_error(404, "NotFound", f'namespaces "{md["namespace"]}" not found',
                                {"name": md["namespace"], "kind": "namespaces"})
        if info.namespaced and self._live((NAMESPACES, None, md["namespace"]))["metadata"].get("deletionTimestamp"):
            raise _status_error(403, "Forbidden", f'{res.plural} "{key[2]}" is forbidden: unable to create new '
                                                  f'content in namespace {md["namespace"]} because it is being '
                                                  "terminated")
        for field in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            md.pop(field, None)
        md.update(uid=meta.new_uid(), creationTimestamp=meta.now(), generation=1)
        if "status" in info.subresources:
            obj.pop("status", None)
        if not md.get("name"):
            md["name"] = ""  # reported by _validate as a missing name
        self.builtins.default(res, obj, None)
        obj = self._validate(res, obj, None)
        if self._live(key) is not None:
            raise _status_error(409, "AlreadyExists", f'{res.plural} "{key[2]}" already exists',
                                {"name": key[2], "group": res.group, "kind": res.plural})
        if res == CRD_RESOURCE:
            obj["status"] = crds.established_status(obj)
            self._serve_crd(obj)
        return self._store(key, obj, None, "ADDED")

    def _strict_fields(self, res: resource, body: dict[str, Any]) -> None:
        """``fieldValidation=Strict``: unknown fields are a 400 instead of being dropped."""
        if res in self.schemas:
            unknown = schema.unknown_fields(body, self.schemas[res])
        else:
            import kubernetes_validate  # only strict clients (Helm, kubectl) pay for the builtin schemas

            try:
                kubernetes_validate.validate(body, ".".join(map(str, self.server_version)) + ".0", strict=True)
                return
            except kubernetes_validate.SchemaNotFoundError:
                return
            except kubernetes_validate.ValidationError as exc:
                unknown = [f"{'.'.join(map(str, exc.path)) or '<root>'}: {exc.message}"]
        if unknown:
            raise _status_error(400, "BadRequest", "strict decoding error: unknown or invalid field(s): "
                                + ", ".join(f'"{u}"' for u in unknown))

    def _put(self, res: resource, ns: str | None, name: str, sub: str | None, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _status_error(400, "BadRequest", "the request body must be a JSON object")
        if sub == "scale":
            return self._write_scale(res, ns, name, body)
        return self.update(res, ns, name, body, subresource=sub)

    def _patch(self, res: resource, ns: str | None, name: str, sub: str | None, request: Request) -> dict[str, Any]:
        content_type = request.headers.get("Content-Type", "")
        if patches.STRATEGIC_PATCH in content_type and res in self.schemas:
            raise _status_error(415, "UnsupportedMediaType", "strategic merge patch is not supported for custom "
                                                             f"resources ({res.plural}.{res.group}); use a merge patch")
        if patches.APPLY_PATCH in content_type:
            return self._apply(res, ns, name, sub, request)
        current = self.get(res, ns, name)
        base = crds.scale_of(current, self.scales[res]) if sub == "scale" else current
        try:
            patched = patches.apply_patch(base, request.data, content_type)
        except patches.PatchError as exc:
            reason = {422: "Invalid", 415: "UnsupportedMediaType"}.get(exc.status, "BadRequest")
            raise _status_error(exc.status, reason, str(exc)) from None
        if sub == "scale":
            return self._write_scale(res, ns, name, patched)
        return self.update(res, ns, name, patched, subresource=sub)

    def _apply(self, res: resource, ns: str | None, name: str, sub: str | None, request: Request) -> Any:
        """Server-side apply, simplified: create when absent, else merge the applied configuration in.

        Field ownership is not tracked: fields dropped from a later apply are kept, not removed.
        """
        try:
            body = request.data if isinstance(request.data, dict) else yaml.safe_load(request.text or "")
        except yaml.YAMLError as exc:
            raise _status_error(400, "BadRequest", f"the applied configuration is not valid YAML: {exc}") from None
        if not isinstance(body, dict) or sub == "scale":
            raise _status_error(400, "BadRequest", "server-side apply needs an object (and no scale subresource)")
        md = body.setdefault("metadata", {})
        if md.get("name", name) != name:
            raise _status_error(400, "BadRequest", f"the name of the object ({md['name']}) does not match the name "
                                                   f"on the URL ({name})")
        md["name"] = name
        if self._live((res, ns, name)) is None:
            if sub is not None:
                self.get(res, ns, name)  # 404
            return Response(status=201, payload=self.create(res, body, namespace=ns))
        current = self.get(res, ns, name)
        applied = {"status": body.get("status")} if sub == "status" else body
        return self.update(res, ns, name, patches.strategic_merge_patch(current, applied), subresource=sub)

    def _write_scale(self, res: resource, ns: str | None, name: str, scale: dict[str, Any]) -> dict[str, Any]:
        current = self.get(res, ns, name)
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise _status_error(422, "Invalid", f"Scale.autoscaling \"{name}\" is invalid: spec.replicas: "
                                                f"Invalid value: {replicas!r}: must be greater than or equal to 0")
        wanted_rv = (scale.get("metadata") or {}).get("resourceVersion")
        crds.set_path(current, self.scales[res].spec_replicas, replicas)
        current["metadata"]["resourceVersion"] = wanted_rv or current["metadata"]["resourceVersion"]
        return crds.scale_of(self.update(res, ns, name, current), self.scales[res])

    def update(self, res: resource, ns: str | None, name: str, body: dict[str, Any],
               *, subresource: str | None = None) -> dict[str, Any]:
        """Replace an object (PUT semantics; PATCH lands here after patching): 409 on a stale resourceVersion."""
        info = self.info(res)
        key = (res, ns, name)
        old = self.get(res, ns, name)
        given_rv = (body.get("metadata") or {}).get("resourceVersion")
        if given_rv and given_rv != old["metadata"]["resourceVersion"]:
            raise _status_error(409, "Conflict", f'Operation cannot be fulfilled on {res.plural} "{name}": the object '
                                                 "has been modified; please apply your changes to the latest version "
                                                 "and try again",
                                {"name": name, "group": res.group, "kind": res.plural})
        if (body.get("metadata") or {}).get("name", name) != name:
            raise _status_error(400, "BadRequest", f"the name of the object ({body['metadata']['name']}) does not "
                                                   f"match the name on the URL ({name})")
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in body:
                new["status"] = copy.deepcopy(body["status"])
            else:
                new.pop("status", None)
        else:
            new = copy.deepcopy(body)
            new.setdefault("apiVersion", old.get("apiVersion"))
            new.setdefault("kind", old.get("kind"))
            if "status" in info.subresources:
                new.pop("status", None)
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
        md, old_md = new.setdefault("metadata", {}), old["metadata"]
        for field in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                      "deletionGracePeriodSeconds", "generation", "resourceVersion"):
            if field in old_md:
                md[field] = old_md[field]
            else:
                md.pop(field, None)
        if old_md.get("deletionTimestamp"):
            added = set(md.get("finalizers") or []) - set(old_md.get("finalizers") or [])
            if added:
                raise _status_error(422, "Invalid", f'{old.get("kind")} "{name}" is invalid: metadata.finalizers: '
                                                    f"Forbidden: no new finalizers can be added if the object is "
                                                    f"being deleted, found new finalizers {sorted(added)}")
        self.builtins.default(res, new, old)
        new = self._validate(res, new, old)
        md = new["metadata"]
        if meta.without_volatile(new) != meta.without_volatile(old):
            md["generation"] = int(old_md.get("generation", 1)) + 1
        if new == old:
            return old  # a no-op write changes nothing: no new resourceVersion, no event
        if res == CRD_RESOURCE:
            self._serve_crd(new)
        stored = self._store(key, new, old, "MODIFIED")
        if md.get("deletionTimestamp") and not md.get("finalizers"):
            self._remove(key)
        return stored

    # ---------------------------------------------------------------------------------------- deleting

    def delete(self, res: resource, ns: str | None, name: str, *, options: Any = None,
               params: dict[str, str] | None = None) -> dict[str, Any]:
        """Delete (or, with finalizers, mark for deletion); cascades to dependents per propagationPolicy."""
        current = self.get(res, ns, name)
        options = options if isinstance(options, dict) else {}
        pre = options.get("preconditions") or {}
        cur_md = current["metadata"]
        if (pre.get("uid") and pre["uid"] != cur_md["uid"]) or \
                (pre.get("resourceVersion") and pre["resourceVersion"] != cur_md["resourceVersion"]):
            raise _status_error(409, "Conflict", f'Operation cannot be fulfilled on {res.plural} "{name}": '
                                                 "Precondition failed")
        policy = options.get("propagationPolicy") or (params or {}).get("propagationPolicy") \
            or ("Orphan" if res in ORPHAN_BY_DEFAULT else "Background")
        if options.get("orphanDependents") is True:
            policy = "Orphan"
        key = (res, ns, name)
        if policy == "Orphan":
            self._orphan(cur_md["uid"])
        elif policy == "Foreground" and self._dependents(cur_md["uid"]):
            # The owner stays (deletionTimestamp + foregroundDeletion) until its dependents are gone.
            marked = copy.deepcopy(current)
            marked["metadata"].setdefault("deletionTimestamp", meta.now())
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            marked["metadata"]["finalizers"] = [*(cur_md.get("finalizers") or []), FOREGROUND_DELETION]
            stored = self._store(key, marked, current, "MODIFIED")
            self._collect(cur_md["uid"], policy="Foreground")
            return self._release_foreground(key) or stored
        if cur_md.get("finalizers"):
            if cur_md.get("deletionTimestamp"):
                return current
            marked = copy.deepcopy(current)
            marked["metadata"]["deletionTimestamp"] = meta.now()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            return self._store(key, marked, current, "MODIFIED")
        return self._remove(key)

    def _release_foreground(self, key: ObjKey | None) -> dict[str, Any] | None:
        """Drop an owner's foregroundDeletion finalizer once no dependents remain (it may then go)."""
        obj = self._live(key) if key is not None else None
        if obj is None or FOREGROUND_DELETION not in (obj["metadata"].get("finalizers") or []) \
                or self._dependents(obj["metadata"]["uid"]):
            return None
        assert key is not None
        new = copy.deepcopy(obj)
        new["metadata"]["finalizers"] = [f for f in obj["metadata"]["finalizers"] if f != FOREGROUND_DELETION]
        if not new["metadata"]["finalizers"]:
            del new["metadata"]["finalizers"]
        stored = self._store(key, new, obj, "MODIFIED")
        return self._remove(key) if not new["metadata"].get("finalizers") else stored

    def _remove(self, key: ObjKey) -> dict[str, Any]:
        obj = self.objects._objects[key]
        last = copy.deepcopy(obj.raw)
        rv = self.journal.next_rv()
        last["metadata"]["resourceVersion"] = str(rv)
        obj.delete()
        self._by_uid.pop(last["metadata"]["uid"], None)
        self._by_res.get(key[0], {}).pop(key, None)
        self._index_owners(key, last, None)
        self.journal.record(rv, key[0], "DELETED", last, None)
        if key[0] == CRD_RESOURCE:
            self._unserve_crd(last)
        if key[0] == NAMESPACES:
            for other, _ in self.live_objects():
                if other[1] == key[2] and self.resources[other[0]].namespaced:
                    self.delete(other[0], other[1], other[2], options={"propagationPolicy": "Background"})
        self._collect(last["metadata"]["uid"])
        for ref in last["metadata"].get("ownerReferences") or []:  # an owner in foreground deletion may go now
            self._release_foreground(self._by_uid.get(ref.get("uid", "")))
        return last

    def _index_owners(self, key: ObjKey, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        for obj, add in ((old, False), (new, True)):
            for ref in (obj or {}).get("metadata", {}).get("ownerReferences") or []:
                keys = self._by_owner.setdefault(ref.get("uid", ""), set())
                if add:
                    keys.add(key)
                else:
                    keys.discard(key)

    def _dependents(self, uid: str) -> list[tuple[ObjKey, dict[str, Any]]]:
        found = [(key, self._live(key)) for key in sorted(self._by_owner.get(uid, ()), key=str)]
        return [(key, obj) for key, obj in found if obj is not None
                and any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])]

    def _collect(self, uid: str, *, policy: str = "Background") -> None:
        """Garbage-collect the dependents of ``uid`` that have no other live owner."""
        for key, obj in self._dependents(uid):
            owners = [ref.get("uid") for ref in obj["metadata"].get("ownerReferences") or []]
            alive = [o for o in owners if o != uid and o in self._by_uid]
            if not alive and self._live(key) is not None:
                self.delete(key[0], key[1], key[2], options={"propagationPolicy": policy})

    def _orphan(self, uid: str) -> None:
        for key, obj in self._dependents(uid):
            new = copy.deepcopy(obj)
            new["metadata"]["ownerReferences"] = [r for r in obj["metadata"]["ownerReferences"] if r.get("uid") != uid]
            if not new["metadata"]["ownerReferences"]:
                del new["metadata"]["ownerReferences"]
            self._store(key, new, obj, "MODIFIED")

    def delete_collection(self, request: Request, res: resource, info: Any, ns: str | None) -> dict[str, Any]:
        """DELETE on a collection: delete every object matching the selectors."""
        listing = watching.list_objects(self, request, res, info)
        for item in listing["items"]:
            self.delete(res, item["metadata"].get("namespace"), item["metadata"]["name"], options=request.data)
        return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success"}

    # -------------------------------------------------------------------------------------------- CRDs

    def _serve_crd(self, crd: dict[str, Any]) -> None:
        for version in crds.served_versions(crd):
            self.resources[version.res] = version.info
            if version.schema is not None:
                self.schemas[version.res] = version.schema
            if version.scale is not None:
                self.scales[version.res] = version.scale
            self.printer_columns[version.res] = version.columns

    def _unserve_crd(self, crd: dict[str, Any]) -> None:
        for version in crds.served_versions(crd):
            for key, _ in self.live_objects(version.res):
                self._remove(key)
            self.resources._resources.pop(version.res, None)
            self.schemas.pop(version.res, None)
            self.scales.pop(version.res, None)
            self.printer_columns.pop(version.res, None)

    def ensure_namespace(self, name: str) -> dict[str, Any]:
        """Create a Namespace unless it exists (returns it)."""
        found = self._live((NAMESPACES, None, name))
        return copy.deepcopy(found) if found else self.create(NAMESPACES, {"metadata": {"name": name}})

    def install_crds(self, definitions: list[dict[str, Any]]) -> None:
        """Create CRDs (as ``kubectl apply`` of the CRD manifests would); their kinds are served at once."""
        for crd in definitions:
            self.create(CRD_RESOURCE, crd)

    def register_resource(self, path: str, *, kind: str, namespaced: bool = True,
                          subresources: tuple[str, ...] = ()) -> resource:
        """Serve a schemaless resource such as ``scheduling.volcano.sh/v1beta1/podgroups``."""
        res = resource(path)
        self.resources[res] = self.ResourceInfo(kind=kind, namespaced=namespaced, singular=kind.lower(),
                                                verbs=crds.STANDARD_VERBS, subresources=subresources)
        return res
