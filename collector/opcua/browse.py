"""OPC UA browse-path discovery: the tags a device's ``browse`` rules
(:class:`~config.opcua.BrowseRule`) find on a connected server."""

from __future__ import annotations

import fnmatch
import logging
import re

from asyncua import Client, ua

from config.errors import ConfigError
from config.opcua import BrowseRule, OpcUaDevice, OpcUaTag, parse_node_id

from .diagnosis import status_name

__all__ = ["MAX_BROWSE_NODES", "browse_rule", "discover", "unique"]

log = logging.getLogger("tierproof.collector.opcua")

#: hard cap on the nodes one browse rule visits (a server with a huge address space)
MAX_BROWSE_NODES = 50_000
_BROWSE_CHUNK = 500  # nodes per Browse request
_NOT_TAG_CHAR = re.compile(r"[^A-Za-z0-9_.\-]")


def _tag_name(prefix: str, path: tuple[str, ...]) -> str:
    return _NOT_TAG_CHAR.sub("_", prefix + ".".join(path))


def _node_id_text(nid: ua.NodeId, namespaces: list[str]) -> str:
    """The node id as config text; ``nsu=`` for namespaces above 0 (indices may change)."""
    text: str = nid.to_string()
    idx = nid.NamespaceIndex
    if 0 < idx < len(namespaces) and ";" not in namespaces[idx]:
        prefix = f"ns={idx};"
        if text.startswith(prefix):
            return f"nsu={namespaces[idx]};{text[len(prefix):]}"
    return text


async def _browse(client: Client, nodes: list[ua.NodeId]) -> list[list[ua.ReferenceDescription]]:
    """Forward hierarchical references to Objects and Variables of each node (one request)."""
    params = ua.BrowseParameters()
    params.RequestedMaxReferencesPerNode = 0
    for n in nodes:
        desc = ua.BrowseDescription()
        desc.NodeId = n
        desc.BrowseDirection = ua.BrowseDirection.Forward
        desc.ReferenceTypeId = ua.NodeId(ua.Int32(ua.ObjectIds.HierarchicalReferences))
        desc.IncludeSubtypes = True
        desc.NodeClassMask = ua.NodeClass.Object | ua.NodeClass.Variable
        desc.ResultMask = ua.BrowseResultMask.All
        params.NodesToBrowse.append(desc)
    results = await client.uaclient.browse(params)
    out: list[list[ua.ReferenceDescription]] = []
    for res in results:
        refs = list(res.References or [])
        cp = res.ContinuationPoint
        while cp:
            nxt = ua.BrowseNextParameters()
            nxt.ContinuationPoints = [cp]
            nxt.ReleaseContinuationPoints = False
            more = await client.uaclient.browse_next(nxt)
            if not more:
                break
            refs += more[0].References or []
            cp = more[0].ContinuationPoint
        out.append(refs)
    return out


async def browse_rule(
    client: Client, device: OpcUaDevice, i: int, rule: BrowseRule, namespaces: list[str],
    max_nodes: int,
) -> list[OpcUaTag]:
    """Breadth-first from the rule's root, at most ``max_depth`` levels and ``max_nodes`` nodes."""
    where = f"devices[{device.name}].browse[{i}].root"
    what = f"device {device.name}: browse rule {i} (root {rule.root})"
    ns, kind, ident = parse_node_id(rule.root)
    if isinstance(ns, str):
        if ns not in namespaces:
            raise ConfigError(f"{what} cannot be browsed", [
                (where, f"namespace {ns!r} is not in the server's namespace array")])
        ns = namespaces.index(ns)
    root = ua.NodeId.from_string(f"ns={ns};{kind}={ident}")
    rv = ua.ReadValueId()
    rv.NodeId = root
    rv.AttributeId = ua.AttributeIds.NodeClass
    params = ua.ReadParameters()
    params.NodesToRead = [rv]
    (dv,) = await client.uaclient.read(params)
    code = dv.StatusCode.value if dv.StatusCode is not None else 0
    if code & 0x80000000:
        raise ConfigError(f"{what} cannot be browsed", [
            (where, f"the server has no node {rule.root} ({status_name(code)})")])
    visited: set[ua.NodeId] = {root}
    frontier: list[tuple[ua.NodeId, tuple[str, ...]]] = [(root, ())]
    found: list[OpcUaTag] = []
    depth = 0
    while frontier and depth < rule.max_depth:
        depth += 1
        nxt: list[tuple[ua.NodeId, tuple[str, ...]]] = []
        for start in range(0, len(frontier), _BROWSE_CHUNK):
            chunk = frontier[start:start + _BROWSE_CHUNK]
            results = await _browse(client, [n for n, _ in chunk])
            for (_, path), refs in zip(chunk, results, strict=True):
                for ref in refs:
                    e = ref.NodeId
                    if getattr(e, "ServerIndex", 0):
                        continue  # on another server
                    nid = ua.NodeId(e.Identifier, e.NamespaceIndex, e.NodeIdType)
                    if nid in visited:
                        continue
                    if len(visited) >= max_nodes:
                        log.warning("%s: stopped after %d nodes; narrow root or max_depth",
                                    what, max_nodes)
                        return found
                    visited.add(nid)
                    name = ref.BrowseName.Name or ""
                    child = (*path, name)
                    nxt.append((nid, child))
                    if ref.NodeClass == ua.NodeClass.Variable and fnmatch.fnmatchcase(
                        name, rule.name_filter
                    ):
                        tag_name = _tag_name(rule.name_prefix, child)
                        if not tag_name:
                            continue
                        found.append(OpcUaTag(
                            name=tag_name, asset=rule.asset, role=rule.role,
                            node_id=_node_id_text(nid, namespaces),
                        ))
        frontier = nxt
    return found


def unique(device: OpcUaDevice, tags: list[OpcUaTag]) -> list[OpcUaTag]:
    """Drop tags whose path is configured already or was found first by another node."""
    seen = {t.path for t in device.tags}
    out: list[OpcUaTag] = []
    for t in tags:
        if t.path in seen:
            log.info("%s: discovered %s (%s) skipped: tag path already used", device.name,
                     t.path, t.node_id)
            continue
        seen.add(t.path)
        out.append(t)
    return out


async def discover(client: Client, device: OpcUaDevice, *,
                   max_nodes: int = MAX_BROWSE_NODES) -> list[OpcUaTag]:
    """The tags ``device.browse`` finds on a connected client, in rule then browse order.

    A rule whose root the server does not have raises ConfigError naming
    ``devices[<name>].browse[<i>].root``. A discovered tag whose path is already configured
    (or found earlier) is left out.
    """
    namespaces = await client.get_namespace_array()
    tags: list[OpcUaTag] = []
    for i, rule in enumerate(device.browse):
        tags += await browse_rule(client, device, i, rule, namespaces, max_nodes)
    return unique(device, tags)
