"""LIST and WATCH: selectors, paging, resume by resourceVersion, 410 Gone, bookmarks, timeouts."""

import threading
import time

import pytest
from k8s_emulator.client import ApiError, KubeClient
from k8s_emulator.selectors import SelectorError, parse_label_selector


def _cm(name: str, **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {}}


def _names(listing: dict) -> list[str]:
    return [item["metadata"]["name"] for item in listing["items"]]


def _events(client: KubeClient, **params: str) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in
            client.watch("v1", "ConfigMap", "default", timeoutSeconds="0.5", **params)]


@pytest.mark.parametrize(("selector", "expected"), [
    ("tier=web", ["a", "b"]), ("tier==web,env=prod", ["a"]), ("tier!=web", ["c", "d"]),
    ("env in (prod, dev)", ["a", "b", "c"]), ("env notin (prod)", ["b", "c", "d"]), ("env", ["a", "b", "c"]),
    ("!env", ["d"]), ("", ["a", "b", "c", "d"]),
])
def test_label_selectors(k8s_client: KubeClient, selector: str, expected: list[str]) -> None:
    for name, labels in [("a", {"tier": "web", "env": "prod"}), ("b", {"tier": "web", "env": "dev"}),
                         ("c", {"tier": "db", "env": "dev"}), ("d", {})]:
        k8s_client.create(_cm(name, **labels), "default")
    assert _names(k8s_client.list("v1", "ConfigMap", "default", labelSelector=selector)) == expected


def test_field_selectors_and_namespaces(k8s_client: KubeClient) -> None:
    k8s_client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    k8s_client.create(_cm("x"), "default")
    k8s_client.create(_cm("y"), "default")
    k8s_client.create(_cm("x"), "other")
    assert _names(k8s_client.list("v1", "ConfigMap", "default", fieldSelector="metadata.name=x")) == ["x"]
    assert _names(k8s_client.list("v1", "ConfigMap", "default", fieldSelector="metadata.name!=x")) == ["y"]
    everywhere = k8s_client.list("v1", "ConfigMap", fieldSelector="metadata.name=x")["items"]
    assert sorted(i["metadata"]["namespace"] for i in everywhere) == ["default", "other"]
    response = k8s_client.http.get("/api/v1/configmaps", params={"labelSelector": "a in (b"})
    assert response.status_code == 400


def test_selector_parser_rejects_garbage() -> None:
    with pytest.raises(SelectorError):
        parse_label_selector("a b c")
    assert parse_label_selector("app.kubernetes.io/name=x")({"app.kubernetes.io/name": "x"})


def test_list_paging_with_limit_and_continue(k8s_client: KubeClient) -> None:
    for i in range(5):
        k8s_client.create(_cm(f"c{i}"), "default")
    first = k8s_client.list("v1", "ConfigMap", "default", limit="2")
    assert _names(first) == ["c0", "c1"] and first["metadata"]["remainingItemCount"] == 3
    second = k8s_client.list("v1", "ConfigMap", "default", limit="2", **{"continue": first["metadata"]["continue"]})
    third = k8s_client.list("v1", "ConfigMap", "default", limit="2", **{"continue": second["metadata"]["continue"]})
    assert _names(second) == ["c2", "c3"] and _names(third) == ["c4"] and "continue" not in third["metadata"]
    assert first["kind"] == "ConfigMapList" and int(first["metadata"]["resourceVersion"]) > 0


def test_watch_from_a_list_resource_version_sees_only_later_changes(k8s_client: KubeClient) -> None:
    k8s_client.create(_cm("before"), "default")
    rv = k8s_client.list("v1", "ConfigMap", "default")["metadata"]["resourceVersion"]
    k8s_client.create(_cm("after"), "default")
    k8s_client.patch("v1", "ConfigMap", "before", {"data": {"x": "1"}}, "default")
    k8s_client.delete("v1", "ConfigMap", "after", "default")
    assert _events(k8s_client, resourceVersion=rv) == [("ADDED", "after"), ("MODIFIED", "before"),
                                                        ("DELETED", "after")]


def test_watch_without_resource_version_starts_with_the_current_state(k8s_client: KubeClient) -> None:
    k8s_client.create(_cm("one"), "default")
    k8s_client.create(_cm("two"), "default")
    assert _events(k8s_client) == [("ADDED", "one"), ("ADDED", "two")]


def test_watch_resumes_from_any_event_resource_version(k8s_client: KubeClient) -> None:
    k8s_client.create(_cm("a"), "default")
    events = list(k8s_client.watch("v1", "ConfigMap", "default", timeoutSeconds="1", resourceVersion="1"))
    k8s_client.create(_cm("b"), "default")
    resume_rv = events[-1]["object"]["metadata"]["resourceVersion"]
    assert _events(k8s_client, resourceVersion=resume_rv) == [("ADDED", "b")]


def test_watch_from_a_compacted_resource_version_gets_410_gone(k8s: object, k8s_client: KubeClient) -> None:
    k8s_client.create(_cm("a"), "default")
    old_rv = k8s_client.list("v1", "ConfigMap", "default")["metadata"]["resourceVersion"]
    k8s_client.create(_cm("b"), "default")
    k8s.call(k8s.emulator.journal.compact)
    events = list(k8s_client.watch("v1", "ConfigMap", "default", timeoutSeconds="1", resourceVersion=old_rv))
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"
    fresh_rv = k8s_client.list("v1", "ConfigMap", "default")["metadata"]["resourceVersion"]
    k8s_client.create(_cm("c"), "default")
    assert _events(k8s_client, resourceVersion=fresh_rv) == [("ADDED", "c")]


def test_bookmarks_only_when_allowed(k8s_client: KubeClient) -> None:
    k8s_client.create(_cm("a"), "default")
    rv = k8s_client.list("v1", "ConfigMap", "default")["metadata"]["resourceVersion"]
    with_bookmarks = list(k8s_client.watch("v1", "ConfigMap", "default", timeoutSeconds="2.5",
                                           resourceVersion=rv, allowWatchBookmarks="true"))
    types = [e["type"] for e in with_bookmarks]
    assert set(types) == {"BOOKMARK"} and 1 <= len(types) <= 3  # every 1 s in the fixture (timing may slip)
    assert with_bookmarks[0]["object"]["kind"] == "ConfigMap"
    assert int(with_bookmarks[-1]["object"]["metadata"]["resourceVersion"]) >= int(rv)
    assert _events(k8s_client, resourceVersion=rv) == []


def test_initial_events_end_with_an_annotated_bookmark(k8s_client: KubeClient) -> None:
    k8s_client.create(_cm("a"), "default")
    events = list(k8s_client.watch("v1", "ConfigMap", "default", timeoutSeconds="0.5", sendInitialEvents="true",
                                   allowWatchBookmarks="true", resourceVersionMatch="NotOlderThan"))
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_timeout_seconds_ends_the_stream(k8s_client: KubeClient) -> None:
    started = time.monotonic()
    assert list(k8s_client.watch("v1", "ConfigMap", "default", timeoutSeconds="1", resourceVersion="1")) == []
    assert time.monotonic() - started >= 1.0


def test_live_watch_receives_changes_made_while_streaming(k8s_client: KubeClient) -> None:
    rv = k8s_client.list("v1", "ConfigMap", "default")["metadata"]["resourceVersion"]

    def writer() -> None:
        time.sleep(0.3)
        k8s_client.create(_cm("live", app="x"), "default")

    thread = threading.Thread(target=writer)
    thread.start()
    events = _events(k8s_client, resourceVersion=rv, labelSelector="app=x")
    thread.join()
    assert events == [("ADDED", "live")]


def test_selector_watch_sees_objects_entering_and_leaving(k8s_client: KubeClient) -> None:
    k8s_client.create(_cm("m", app="x"), "default")
    rv = k8s_client.list("v1", "ConfigMap", "default")["metadata"]["resourceVersion"]
    k8s_client.patch("v1", "ConfigMap", "m", {"metadata": {"labels": {"app": "y"}}}, "default")
    k8s_client.patch("v1", "ConfigMap", "m", {"metadata": {"labels": {"app": "x"}}}, "default")
    k8s_client.patch("v1", "ConfigMap", "m", {"data": {"k": "v"}}, "default")
    assert _events(k8s_client, resourceVersion=rv, labelSelector="app=x") == [
        ("DELETED", "m"), ("ADDED", "m"), ("MODIFIED", "m")]


def test_watch_of_other_namespaces_and_kinds_is_filtered(k8s_client: KubeClient) -> None:
    k8s_client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    rv = k8s_client.list("v1", "ConfigMap", "default")["metadata"]["resourceVersion"]
    k8s_client.create(_cm("elsewhere"), "other")
    k8s_client.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}, "default")
    k8s_client.create(_cm("here"), "default")
    assert _events(k8s_client, resourceVersion=rv) == [("ADDED", "here")]


def test_bad_resource_version_is_400(k8s_client: KubeClient) -> None:
    with pytest.raises(ApiError) as err:
        list(k8s_client.watch("v1", "ConfigMap", "default", resourceVersion="abc"))
    assert err.value.status == 400


def test_journal_retention_expires_old_resource_versions(k8s: object, k8s_client: KubeClient) -> None:
    k8s.emulator.journal.limit = 10  # keep at most 10 changes, then drop the older half
    first = k8s_client.create(_cm("first"), "default")["metadata"]["resourceVersion"]
    for i in range(12):
        k8s_client.create(_cm(f"c{i}"), "default")
    assert [e["type"] for e in k8s_client.watch("v1", "ConfigMap", "default", timeoutSeconds="0.5",
                                                resourceVersion=first)] == ["ERROR"]
    recent = k8s_client.list("v1", "ConfigMap", "default")["metadata"]["resourceVersion"]
    k8s_client.create(_cm("last"), "default")
    assert _events(k8s_client, resourceVersion=recent) == [("ADDED", "last")]


def test_kmock_reactions_still_inject_faults(k8s: object, k8s_client: KubeClient) -> None:
    def inject() -> None:
        k8s.emulator["get /api/v1/namespaces/default/configmaps"][:1] << 503
    k8s.call(inject)
    assert k8s_client.http.get("/api/v1/namespaces/default/configmaps").status_code == 503
    assert k8s_client.http.get("/api/v1/namespaces/default/configmaps").status_code == 200  # the fallback again
    k8s_client.create(_cm("after"), "default")  # other requests were never affected
