#!/usr/bin/env python3
"""Independent pandapower oracle for the N-1 FEEDER TRANSFER check (planning.md section 2).

Reads only a gridpack (network.geojson, readings.csv) and an applications file. For every
application and every in-service MV node on a feeder within the search radius (busbars are
skipped: for a new bay the transfer check does not apply), it finds the restoration cases of
the candidate's feeder F after the loss of F's head (breaker and first segment):

  one tie    close a tie T (normally-open switch from F to another feeder G, or to a
             busbar): G's busbar feeds G and, through T, all of F re-rooted at T;
  split      open a normally-closed switch S inside F; the part nearer the lost head is fed
             over its own tie T1 (to G1), the part below S over T2 (to G2).

and, per case, the largest integer kW x >= 0 of new load at the candidate for which the case
passes at EVERY step of the data window:

  segment_thermal         every segment of the feeders involved <= 100 % of rated_a
  head_thermal            each supplying feeder's head current <= 100 % of its rated_a
  voltage                 every node of the feeders involved within 0.93..1.07 pu
  substation_transformer  every supplying busbar group <= 100 % of its kVA: its measured load
                          less the measured heads of the feeders whose supply changed, plus
                          the new heads

Each supplying busbar is held at its measured voltage (the supplying feeder's head u_kv).
Distribution transformers are constant-PQ loads at their measured p/q; the applicant a
constant-PQ load x * profile(step) kW at its lagging power factor.

Method (exact, but fast), as in tests/generation/oracle.py:
  1. every case network is solved with pandapower at x = 0 on every step (this decides
     `passes_without` exactly) and with the numpy sweep; the max abs difference is printed;
  2. a screen: an exact AC backward/forward sweep of the same radial model (numpy, all steps
     at once) bisects every step's headroom; steps that cannot be the least are dropped early;
  3. pandapower bisection to 1 kW on the steps whose screened headroom is near the least,
     confirmation at the headroom on every step within --margin of the least, and
     classification of the binding check at headroom + 1 kW. Where screen and pandapower
     disagree, pandapower wins;
  4. --verify K candidates per application are re-checked with pandapower on EVERY step
     with profile > 0 (each of their cases that passes at x = 0, at headroom and headroom + 1 kW).

Usage: oracle.py [--gridpack DIR] [--applications FILE] [--out FILE] [--verify K]
                 [--only A01,A07] [--insert-switch SEG@NODE ...]
"""
import argparse
import json
import math
import os
import sys
import time
import warnings

# one BLAS thread: the sweep's small matrix products only lose from threading on a busy machine
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

import pandapower as pp  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# The fixtures sit beside the repository, as the engine's tests find them.
DEFAULT_GRIDPACK = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "fixtures", "1-MV-semiurb"))

ORDER = ["segment_thermal", "head_thermal", "voltage", "substation_transformer"]
S_BASE_MVA = 1.0
CAP_KW = 100000.0           # largest new load (kW) the search looks at
T0 = time.monotonic()


def log(*a):
    print(f"[{time.monotonic() - T0:7.1f}s]", *a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- geodesy
def geodesic_m(lon1, lat1, lon2, lat2):
    """WGS84 ellipsoidal distance (Vincenty inverse), metres."""
    a = 6378137.0
    f = 1 / 298.257223563
    b = (1 - f) * a
    if lon1 == lon2 and lat1 == lat2:
        return 0.0
    L = math.radians(lon2 - lon1)
    U1 = math.atan((1 - f) * math.tan(math.radians(lat1)))
    U2 = math.atan((1 - f) * math.tan(math.radians(lat2)))
    sU1, cU1, sU2, cU2 = math.sin(U1), math.cos(U1), math.sin(U2), math.cos(U2)
    lam = L
    for _ in range(200):
        sl, cl = math.sin(lam), math.cos(lam)
        ss = math.hypot(cU2 * sl, cU1 * sU2 - sU1 * cU2 * cl)
        if ss == 0:
            return 0.0
        cs = sU1 * sU2 + cU1 * cU2 * cl
        sig = math.atan2(ss, cs)
        sa = cU1 * cU2 * sl / ss
        c2a = 1 - sa * sa
        c2sm = cs - 2 * sU1 * sU2 / c2a if c2a else 0.0
        C = f / 16 * c2a * (4 + f * (4 - 3 * c2a))
        prev = lam
        lam = L + (1 - C) * f * sa * (sig + C * ss * (c2sm + C * cs * (-1 + 2 * c2sm * c2sm)))
        if abs(lam - prev) < 1e-12:
            break
    u2 = c2a * (a * a - b * b) / (b * b)
    A = 1 + u2 / 16384 * (4096 + u2 * (-768 + u2 * (320 - 175 * u2)))
    B = u2 / 1024 * (256 + u2 * (-128 + u2 * (74 - 47 * u2)))
    ds = B * ss * (c2sm + B / 4 * (cs * (-1 + 2 * c2sm ** 2) - B / 6 * c2sm * (-3 + 4 * ss ** 2) * (-3 + 4 * c2sm ** 2)))
    return b * A * (sig - ds)


# ----------------------------------------------------------------------------- gridpack
class Grid:
    def __init__(self, folder, insert_switches=()):
        gj = json.load(open(os.path.join(folder, "network.geojson")))
        self.name = gj.get("name", os.path.basename(folder.rstrip("/")))
        self.nodes, self.segments, self.switches = {}, {}, {}
        self.feeders, self.transformers, self.subtrs, self.substations = {}, {}, {}, {}
        for f in gj["features"]:
            p = dict(f["properties"])
            g = f.get("geometry")
            k = p["kind"]
            if k == "node":
                p["lon"], p["lat"] = g["coordinates"][:2]
                p.setdefault("in_service", True)
                self.nodes[p["id"]] = p
            elif k == "segment":
                p.setdefault("in_service", True)
                if p.get("length_m") is None:
                    c = g["coordinates"]
                    p["length_m"] = sum(geodesic_m(*c[i][:2], *c[i + 1][:2]) for i in range(len(c) - 1))
                self.segments[p["id"]] = p
            elif k == "switch":
                p.setdefault("normally_open", False)
                self.switches[p["id"]] = p
            elif k == "feeder":
                self.feeders[p["id"]] = p
            elif k == "transformer":
                p.setdefault("in_service", True)
                self.transformers[p["id"]] = p
            elif k == "substation_transformer":
                p.setdefault("in_service", True)
                self.subtrs[p["id"]] = p
            elif k == "substation":
                self.substations[p["id"]] = p
        self.warnings = []
        self.modified = []
        for spec in insert_switches:
            self._insert_switch(spec)
        self._groups()
        self._feeders()

    def _insert_switch(self, spec):
        """SEG@NODE: cut segment SEG's end at NODE onto a new node joined to NODE by a new
        normally-closed switch (a synthetic variant to exercise split cases)."""
        seg_id, node = spec.split("@")
        s = self.segments[seg_id]
        if node not in (s["from"], s["to"]):
            raise SystemExit(f"--insert-switch {spec}: {node} is not an end of {seg_id}")
        new = f"{node}_{seg_id}_sw"
        nd = dict(self.nodes[node])
        nd.update({"id": new, "node_type": "junction", "spare_bays": 0})
        self.nodes[new] = nd
        s["from" if s["from"] == node else "to"] = new
        sid = f"SW_{seg_id}"
        self.switches[sid] = {"kind": "switch", "id": sid, "from": node, "to": new, "normally_open": False,
                              "kv": nd["kv"]}
        self.modified.append(f"segment {seg_id} now ends at new node {new}; new closed switch {sid} {node}-{new}")

    def is_busbar(self, n):
        return self.nodes[n]["node_type"] == "busbar"

    def _groups(self):
        parent = {n: n for n in self.nodes if self.is_busbar(n)}

        def find(x):
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x
        for s in self.switches.values():
            if not s["normally_open"] and s["from"] in parent and s["to"] in parent:
                parent[find(s["from"])] = find(s["to"])
        groups = {}
        for n in parent:
            groups.setdefault(find(n), []).append(n)
        self.group_of, self.groups = {}, {}
        for root, members in groups.items():
            gid = "+".join(sorted(members))
            trs = [t["id"] for t in self.subtrs.values() if t["in_service"] and t["bus"] in members]
            self.groups[gid] = {"busbars": sorted(members), "transformers": sorted(trs),
                                "rated_kva": sum(self.subtrs[t]["rated_kva"] for t in trs)}
            for m in members:
                self.group_of[m] = gid

    def _feeders(self):
        adj = {n: [] for n in self.nodes}
        for s in self.segments.values():
            if s["in_service"] and self.nodes[s["from"]]["in_service"] and self.nodes[s["to"]]["in_service"]:
                adj[s["from"]].append((s["to"], "segment", s["id"]))
                adj[s["to"]].append((s["from"], "segment", s["id"]))
        for s in self.switches.values():
            if not s["normally_open"] and self.nodes[s["from"]]["in_service"] and self.nodes[s["to"]]["in_service"]:
                adj[s["from"]].append((s["to"], "switch", s["id"]))
                adj[s["to"]].append((s["from"], "switch", s["id"]))
        self.feeder_of = {}
        self.tree = {}
        for fid, f in self.feeders.items():
            head, first = f["head_node"], f["first_node"]
            first_edges = [e for e in adj[head] if e[0] == first]
            if not first_edges:
                raise SystemExit(f"feeder {fid}: no in-service segment or closed switch {head} -> {first}")
            order, parent = [first], {first: (head, first_edges[0][1], first_edges[0][2])}
            if len(first_edges) > 1:
                self.warnings.append(f"feeder {fid}: {len(first_edges)} parallel head elements; only {first_edges[0][2]} used")
            i = 0
            while i < len(order):
                u = order[i]
                i += 1
                for v, kind, eid in adj[u]:
                    if v == parent[u][0] and eid == parent[u][2]:
                        continue
                    if self.is_busbar(v):
                        if v != head:
                            self.warnings.append(f"feeder {fid}: node {u} reaches busbar {v}")
                        continue
                    if v in parent:
                        raise SystemExit(f"feeder {fid}: closed loop at {v} (this oracle needs radial feeders)")
                    parent[v] = (u, kind, eid)
                    order.append(v)
            for n in order:
                if n in self.feeder_of:
                    self.warnings.append(f"node {n} on feeders {self.feeder_of[n]} and {fid}")
                else:
                    self.feeder_of[n] = fid
            self.tree[fid] = (order, parent)

    # ------------------------------------------------------------ ties and cases
    def ties_of(self, fid):
        """Normally-open switches with one side on F and the other on an in-service node of
        another feeder G (or on an in-service busbar: G = that busbar)."""
        out = []
        for s in sorted(self.switches.values(), key=lambda s: s["id"]):
            if not s["normally_open"]:
                continue
            for a, b in ((s["from"], s["to"]), (s["to"], s["from"])):
                if self.feeder_of.get(a) != fid:
                    continue
                if not self.nodes[b]["in_service"]:
                    continue
                if self.is_busbar(b):
                    out.append({"switch": s["id"], "f_node": a, "g_node": b, "to": b, "to_kind": "busbar"})
                elif self.feeder_of.get(b) not in (None, fid):
                    out.append({"switch": s["id"], "f_node": a, "g_node": b, "to": self.feeder_of[b],
                                "to_kind": "feeder"})
                break
        return out

    def cases_of(self, fid):
        """Restoration cases of F: one per tie, and one per (S, T1, T2) split."""
        ties = self.ties_of(fid)
        order, parent = self.tree[fid]
        all_nodes = list(order)
        cases = [{"label": t["switch"], "kind": "tie", "opened": None,
                  "parts": [{"tie": t, "nodes": set(all_nodes)}]} for t in ties]
        children = {n: [] for n in order}
        for n in order[1:]:
            children[parent[n][0]].append(n)
        for n in order[1:]:
            if parent[n][1] != "switch":
                continue
            S = parent[n][2]
            below, stack = set(), [n]
            while stack:
                u = stack.pop()
                below.add(u)
                stack.extend(children[u])
            above = set(all_nodes) - below
            for t1 in ties:
                if t1["f_node"] not in above:
                    continue
                for t2 in ties:
                    if t2["f_node"] not in below:
                        continue
                    cases.append({"label": f"{t1['switch']}+{t2['switch']}/{S}", "kind": "split", "opened": S,
                                  "parts": [{"tie": t1, "nodes": above}, {"tie": t2, "nodes": below}]})
        return ties, cases


# ----------------------------------------------------------------------------- readings
def load_readings(folder):
    path = os.path.join(folder, "readings.csv")
    if not os.path.exists(path):
        path += ".gz"
    df = pd.read_csv(path)
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    steps = pd.DatetimeIndex(sorted(df["ts"].unique()))
    piv = df.pivot_table(index="ts", columns=["asset", "quantity"], values="value", aggfunc="last")
    return steps, piv.reindex(steps)


def series(piv, asset, qty):
    key = (asset, qty)
    if key in piv.columns:
        return piv[key].to_numpy(dtype=float)
    return None


def profile_of(app, steps):
    """96 quarter-hour factors (UTC quarter-hour of the step's ts) or flat 1.0."""
    if app.get("profile") is not None:
        prof = np.asarray(app["profile"], dtype=float)
        if prof.shape != (96,) or (prof < 0).any() or (prof > 1).any():
            raise SystemExit(f"{app['id']}: profile must be 96 values in [0, 1]")
        idx = (steps.hour * 4 + steps.minute // 15).to_numpy()
        return prof[idx]
    return np.ones(len(steps))


# ----------------------------------------------------------------------------- limits
class Limits:
    def __init__(self, a):
        self.v_min, self.v_max = a.v_min, a.v_max
        self.thermal = a.thermal_pct
        self.sub = a.substation_pct
        self.tie = a.tie


# ----------------------------------------------------------------------------- case model
class CaseModel:
    """A forest of radial trees, each rooted at a supplying busbar held at a measured voltage.

    supplies: list of dicts {busbar, feeder (supplying feeder id or None), u_kv (T,), rated_a,
    order (node list, root's children first), parent {node: (parent node or ROOT, kind, id)}}.
    Used for the normal state (one supply: the feeder itself) and for every restoration case.
    """

    def __init__(self, o, label, supplies, changed_feeders):
        g, lim = o.grid, o.lim
        self.o, self.label, self.lim = o, label, lim
        self.T = o.T
        self.supplies = supplies
        nodes, par, z, kind_of, sup_of = [], [], [], [], []
        self.edge_id = []
        kv = None
        for si, s in enumerate(supplies):
            bkv = float(g.nodes[s["busbar"]]["kv"])
            if kv is None:
                kv = bkv
            elif abs(kv - bkv) > 1e-9:
                raise ValueError(f"case {label}: busbars of different kv")
            for nd in s["order"]:
                nodes.append(nd)
                sup_of.append(si)
        self.nodes = nodes
        self.idx = {n: i for i, n in enumerate(nodes)}
        if len(self.idx) != len(nodes):
            raise ValueError(f"case {label}: node fed twice")
        n = len(nodes)
        self.kv = kv
        self.zbase = kv ** 2 / S_BASE_MVA
        self.ibase_a = S_BASE_MVA * 1e3 / (math.sqrt(3) * kv)
        self.sup_of = np.array(sup_of)
        self.par = np.full(n, -1)
        zz = np.zeros(n, dtype=complex)
        self.seg_ids, seg_pos, seg_rated = [], [], []
        self.parent_edge = []
        for i, nd in enumerate(nodes):
            s = supplies[sup_of[i]]
            pu, kind, eid = s["parent"][nd]
            self.parent_edge.append((pu, kind, eid))
            self.par[i] = self.idx[pu] if pu in self.idx and self.sup_of[self.idx[pu]] == sup_of[i] else -1
            if kind == "segment":
                seg = g.segments[eid]
                L = float(seg["length_m"]) / 1000.0
                zz[i] = complex(seg["r_ohm_per_km"] * L, seg["x_ohm_per_km"] * L) / self.zbase
                self.seg_ids.append(eid)
                seg_pos.append(i)
                seg_rated.append(float(seg["rated_a"]))
        self.seg_pos = np.array(seg_pos, dtype=int)
        self.seg_rated = np.array(seg_rated)
        anc = []
        for i in range(n):
            a, j = [], i
            while j >= 0:
                a.append(j)
                j = self.par[j]
            anc.append(set(a))
        D = np.zeros((n, n))
        for i in range(n):
            for j in anc[i]:
                D[j, i] = 1.0               # the edge into j carries the current drawn at i
        self.DT = D.T.copy()
        Zc = np.zeros((n, n), dtype=complex)
        for i in range(n):
            for j in range(i, n):
                c = anc[i] & anc[j]
                if c:
                    Zc[i, j] = Zc[j, i] = sum(zz[k] for k in c)
        self.ZT = Zc.T.copy()
        nsup = len(supplies)
        self.root_children = [np.where((self.par < 0) & (self.sup_of == si))[0] for si in range(nsup)]
        # supply voltages (pu), ratings
        self.vm0 = np.stack([s["u_kv"] / kv for s in supplies], axis=1)      # (T, nsup)
        self.vm0n = self.vm0[:, self.sup_of]                                  # (T, n)
        self.head_rated = np.array([s["rated_a"] if s["rated_a"] else np.nan for s in supplies])
        # loads
        self.P = np.zeros((self.T, n))
        self.Q = np.zeros((self.T, n))
        for i, nd in enumerate(nodes):
            if nd in o.node_p:
                self.P[:, i] = o.node_p[nd]
                self.Q[:, i] = o.node_q[nd]
        # supplying groups: measured load less the measured heads of changed feeders
        self.gids = sorted({g.group_of[s["busbar"]] for s in supplies})
        self.Mg = np.zeros((nsup, len(self.gids)))
        for si, s in enumerate(supplies):
            self.Mg[si, self.gids.index(g.group_of[s["busbar"]])] = 1.0
        self.g_rated = np.array([g.groups[gid]["rated_kva"] or np.nan for gid in self.gids])
        self.gbase_p = np.zeros((self.T, len(self.gids)))
        self.gbase_q = np.zeros((self.T, len(self.gids)))
        for k, gid in enumerate(self.gids):
            self.gbase_p[:, k] = o.group_pm[gid]
            self.gbase_q[:, k] = o.group_qm[gid]
            for fid in changed_feeders:
                if g.group_of[g.feeders[fid]["head_node"]] == gid:
                    self.gbase_p[:, k] -= o.head_pm[fid]
                    self.gbase_q[:, k] -= o.head_qm[fid]
        self._build_pp()

    # -------------------------------------------------------------- pandapower
    def _build_pp(self):
        g = self.o.grid
        net = pp.create_empty_network(sn_mva=S_BASE_MVA)
        self.root_bus = []
        for si, s in enumerate(self.supplies):
            b = pp.create_bus(net, vn_kv=self.kv, name=f"{s['busbar']}#{si}")
            self.root_bus.append(b)
            pp.create_ext_grid(net, b, vm_pu=1.0, va_degree=0.0, name=f"{s['busbar']}#{si}")
        self.bus_of = [pp.create_bus(net, vn_kv=self.kv, name=nd) for nd in self.nodes]
        line_of_seg = {}
        for i, nd in enumerate(self.nodes):
            pu, kind, eid = self.parent_edge[i]
            bp = self.bus_of[self.par[i]] if self.par[i] >= 0 else self.root_bus[self.sup_of[i]]
            if kind == "segment":
                s = g.segments[eid]
                line_of_seg[eid] = pp.create_line_from_parameters(
                    net, bp, self.bus_of[i], length_km=float(s["length_m"]) / 1000.0,
                    r_ohm_per_km=float(s["r_ohm_per_km"]), x_ohm_per_km=float(s["x_ohm_per_km"]),
                    c_nf_per_km=0.0, max_i_ka=float(s["rated_a"]) / 1000.0, name=eid)
            else:
                pp.create_switch(net, bp, self.bus_of[i], et="b", closed=True, name=eid)
        self.pp_load = np.array([pp.create_load(net, self.bus_of[i], p_mw=0.0, q_mvar=0.0, name=nd)
                                 for i, nd in enumerate(self.nodes)])
        self.pp_new = pp.create_load(net, self.bus_of[0], p_mw=0.0, q_mvar=0.0, name="new")
        assert list(net.load.index) == list(range(len(self.nodes) + 1)) and self.pp_new == len(self.nodes)
        self.pp_line_idx = np.array([line_of_seg[s] for s in self.seg_ids], dtype=int)
        self.pp_bus_idx = np.array(self.bus_of)
        self.net = net
        self.pp_runs = 0
        self.pp_time = 0.0

    def pp_flow(self, t, node=None, p_kw=0.0, q_kvar=0.0):
        """pandapower flow at step t with a new load p_kw + j q_kvar at node. Returns the raw
        result arrays with a leading axis of 1, or None where it did not converge."""
        net = self.net
        # loads are rows 0..n-1 (one per node) and row n (the applicant), in that order
        net.load["p_mw"] = np.append(self.P[t], p_kw) / 1000.0
        net.load["q_mvar"] = np.append(self.Q[t], q_kvar) / 1000.0
        net.ext_grid["vm_pu"] = self.vm0[t]
        if node is not None and net.load.at[self.pp_new, "bus"] != self.bus_of[self.idx[node]]:
            net.load.at[self.pp_new, "bus"] = self.bus_of[self.idx[node]]
        t0 = time.perf_counter()
        try:
            pp.runpp(net, algorithm="nr", init="results" if net.converged else "auto",
                     tolerance_mva=1e-9, max_iteration=50, numba=self.o.use_numba,
                     calculate_voltage_angles=True, check_connectivity=False)
            ok = True
        except Exception:
            ok = False
        self.pp_time += time.perf_counter() - t0
        self.pp_runs += 1
        self.o.pp_runs += 1
        if not ok:
            net.converged = False
            return None
        vm = net.res_bus.vm_pu.to_numpy()[self.pp_bus_idx]
        ika = np.maximum(net.res_line.i_from_ka.to_numpy(), net.res_line.i_to_ka.to_numpy())[self.pp_line_idx]
        pe = net.res_ext_grid.p_mw.to_numpy() * 1000.0
        qe = net.res_ext_grid.q_mvar.to_numpy() * 1000.0
        head_a = np.hypot(pe, qe) / (math.sqrt(3) * self.vm0[t] * self.kv)
        return {"vm": vm[None, :], "seg_pct": (ika * 1000.0 / self.seg_rated * 100.0)[None, :],
                "head_pct": (head_a / self.head_rated * 100.0)[None, :],
                "p_head": pe[None, :], "q_head": qe[None, :], "bad": np.array([False]), "tsel": np.array([t])}

    # -------------------------------------------------------------- sweep (screen)
    def sweep(self, tsel, node=None, p_kw=None, q_kvar=None, tol=1e-11, maxit=150):
        """Exact AC flow of the radial forest by fixed-point backward/forward sweep,
        vectorised over steps tsel (per-row convergence). p_kw/q_kvar: the new load per step."""
        tsel = np.asarray(tsel, dtype=int)
        S = (self.P[tsel] + 1j * self.Q[tsel]) / (1000.0 * S_BASE_MVA)
        if node is not None:
            S[:, self.idx[node]] += (np.asarray(p_kw) + 1j * np.asarray(q_kvar)) / (1000.0 * S_BASE_MVA)
        V0 = self.vm0n[tsel].astype(complex)
        V = V0.copy()
        act = np.arange(len(tsel))
        conv = np.zeros(len(tsel), dtype=bool)
        bad = np.zeros(len(tsel), dtype=bool)
        for _ in range(maxit):
            if act.size == 0:
                break
            Va = V[act]
            Vn = V0[act] - np.conj(S[act] / Va) @ self.ZT
            with np.errstate(invalid="ignore"):
                d = np.abs(Vn - Va).max(axis=1)
                collapse = ~np.isfinite(Vn).all(axis=1) | (np.abs(Vn).min(axis=1) < 0.5)
            V[act] = np.where(np.isfinite(Vn), Vn, 0.5)
            done = d < tol
            bad[act[collapse]] = True
            conv[act[done & ~collapse]] = True
            act = act[~(done | collapse)]
        bad |= ~conv
        I = np.conj(S / V)
        Ib = I @ self.DT                       # current in the edge into each node (pu)
        nsup = len(self.supplies)
        Ihead = np.stack([Ib[:, rc].sum(axis=1) for rc in self.root_children], axis=1)   # (k, nsup)
        Shead = self.vm0[tsel] * np.conj(Ihead)
        head_a = np.abs(Ihead) * self.ibase_a
        return {"vm": np.abs(V), "seg_pct": np.abs(Ib[:, self.seg_pos]) * self.ibase_a / self.seg_rated * 100.0,
                "head_pct": head_a / self.head_rated * 100.0 if nsup else np.zeros((len(tsel), 0)),
                "p_head": Shead.real * 1000.0, "q_head": Shead.imag * 1000.0, "bad": bad, "tsel": tsel}

    # -------------------------------------------------------------- checks
    def util(self, r):
        """utilization (value / limit) per check, per row; 1.0 = at the limit."""
        lim = self.lim
        tsel = r["tsel"]
        vm = r["vm"]
        gp = self.gbase_p[tsel] + r["p_head"] @ self.Mg
        gq = self.gbase_q[tsel] + r["q_head"] @ self.Mg
        gl = np.hypot(gp, gq) / self.g_rated * 100.0
        hp = np.nan_to_num(r["head_pct"], nan=0.0)
        u = {"segment_thermal": r["seg_pct"].max(axis=1) / lim.thermal if r["seg_pct"].shape[1] else np.zeros(len(tsel)),
             "head_thermal": hp.max(axis=1) / lim.thermal,
             "voltage": np.maximum(vm.max(axis=1) / lim.v_max, lim.v_min / vm.min(axis=1)),
             "substation_transformer": np.nan_to_num(gl, nan=0.0).max(axis=1) / lim.sub}
        return u, gl

    def ok(self, r):
        u, _ = self.util(r)
        okr = ~r["bad"]
        for v in u.values():
            okr &= v <= 1.0 + 1e-12
        return okr, u

    def elements(self, r, row, gl):
        """the element at its worst for each check, at one row."""
        vm = r["vm"][row]
        ivmin, ivmax = int(vm.argmin()), int(vm.argmax())
        lim = self.lim
        vnode = self.nodes[ivmax] if vm[ivmax] / lim.v_max >= lim.v_min / vm[ivmin] else self.nodes[ivmin]
        hp = np.nan_to_num(r["head_pct"][row], nan=-1.0)
        return {"segment_thermal": self.seg_ids[int(r["seg_pct"][row].argmax())] if len(self.seg_ids) else None,
                "head_thermal": self.supplies[int(hp.argmax())]["feeder"] if len(hp) else None,
                "voltage": vnode,
                "substation_transformer": self.gids[int(np.nan_to_num(gl[row], nan=-1).argmax())]}

    def loading(self, r):
        """worst segment-or-head loading in percent, per row."""
        hp = np.nan_to_num(r["head_pct"], nan=0.0)
        seg = r["seg_pct"].max(axis=1) if r["seg_pct"].shape[1] else 0.0
        return np.maximum(seg, hp.max(axis=1) if hp.shape[1] else 0.0)


# ----------------------------------------------------------------------------- oracle
class Oracle:
    def __init__(self, a):
        self.a = a
        self.lim = Limits(a)
        log(f"reading {a.gridpack}")
        self.grid = Grid(a.gridpack, a.insert_switch or ())
        g = self.grid
        self.steps, self.piv = load_readings(a.gridpack)
        self.T = len(self.steps)
        self.ts = [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in self.steps]
        self.use_numba = not a.no_numba
        if self.use_numba:
            try:
                import numba  # noqa: F401
            except Exception:
                self.use_numba = False
        self.pp_runs = 0
        # measured busbar-group flows (sum of the group's substation transformers)
        self.group_pm, self.group_qm = {}, {}
        for gid, grp in g.groups.items():
            pm, qm = np.zeros(self.T), np.zeros(self.T)
            for tr in grp["transformers"]:
                p, q = series(self.piv, tr, "p_kw"), series(self.piv, tr, "q_kvar")
                if p is None:
                    raise SystemExit(f"substation transformer {tr} has no p_kw readings")
                pm += np.nan_to_num(p)
                qm += np.nan_to_num(q) if q is not None else 0.0
            self.group_pm[gid], self.group_qm[gid] = pm, qm
        # node loads (distribution transformers at their measured p/q)
        self.node_p, self.node_q = {}, {}
        for t in g.transformers.values():
            if not t["in_service"] or t["node"] not in g.feeder_of:
                continue
            p, q = series(self.piv, t["id"], "p_kw"), series(self.piv, t["id"], "q_kvar")
            if p is None:
                s = series(self.piv, t["id"], "s_kva")
                if s is None:
                    g.warnings.append(f"{t['id']}: no readings, taken as 0 (unmetered)")
                    continue
                p, q = 0.95 * s, math.sqrt(1 - 0.95 ** 2) * s
            if q is None:
                q = np.zeros(self.T)
            if np.isnan(p).any() or np.isnan(q).any():
                g.warnings.append(f"{t['id']}: {int(np.isnan(p).sum())} steps without p_kw, taken as 0")
            n = t["node"]
            self.node_p[n] = self.node_p.get(n, 0.0) + np.nan_to_num(p)
            self.node_q[n] = self.node_q.get(n, 0.0) + np.nan_to_num(q)
        # busbar voltages: each feeder's head u_kv
        self.u_feeder = {}
        for fid, f in g.feeders.items():
            u = series(self.piv, fid, "u_kv")
            if u is None or np.isnan(u).all():
                g.warnings.append(f"feeder {fid}: no u_kv, busbar at 1.0 pu")
                u = np.full(self.T, float(g.nodes[f["head_node"]]["kv"]))
            self.u_feeder[fid] = pd.Series(u).ffill().bfill().to_numpy()
        # normal state: one model per feeder (sweep only), baseline and the modelled heads
        self.normal = {}
        self.head_pm, self.head_qm = {}, {}
        self.head_source = {}
        for fid in g.feeders:
            m = CaseModel(self, f"normal {fid}", [self.supply_normal(fid)], [])
            r = m.sweep(np.arange(self.T))
            if r["bad"].any():
                raise SystemExit(f"feeder {fid}: normal-state sweep did not converge")
            self.normal[fid] = (m, r)
            hp, hq = series(self.piv, fid, "p_kw"), series(self.piv, fid, "q_kvar")
            if hp is not None and hq is not None and not (np.isnan(hp).any() or np.isnan(hq).any()):
                self.head_pm[fid], self.head_qm[fid] = hp, hq
                self.head_source[fid] = "measured"
            else:
                self.head_pm[fid], self.head_qm[fid] = r["p_head"][:, 0], r["q_head"][:, 0]
                self.head_source[fid] = "modelled (no complete p_kw/q_kvar readings)"
        self.ties, self.cases = {}, {}
        for fid in g.feeders:
            self.ties[fid], self.cases[fid] = g.cases_of(fid)
        self.case_models = {}
        log(f"{len(g.nodes)} nodes, {len(g.feeders)} feeders, {self.T} steps, numba={self.use_numba}, "
            f"cases: {sum(len(c) for c in self.cases.values())}")

    # ------------------------------------------------------------------ supplies
    def busbar_u(self, b):
        g = self.grid
        for fid, f in sorted(g.feeders.items()):
            if f["head_node"] == b:
                return self.u_feeder[fid]
        for fid, f in sorted(g.feeders.items()):
            if g.group_of.get(f["head_node"]) == g.group_of.get(b):
                return self.u_feeder[fid]
        g.warnings.append(f"busbar {b}: no feeder u_kv, held at 1.0 pu")
        return np.full(self.T, float(g.nodes[b]["kv"]))

    def supply_normal(self, fid):
        g = self.grid
        f = g.feeders[fid]
        order, parent = g.tree[fid]
        return {"busbar": f["head_node"], "feeder": fid, "u_kv": self.u_feeder[fid], "rated_a": f.get("rated_a"),
                "order": list(order), "parent": dict(parent)}

    def part_tree(self, fid, tie, part_nodes, opened):
        """F's part (a node set) re-rooted at the tie's F-side node: order and parents."""
        g = self.grid
        order, parent = g.tree[fid]
        first = order[0]
        adj = {n: [] for n in order}
        for n in order:
            if n == first:
                continue                      # the lost head element
            pu, kind, eid = parent[n]
            if eid == opened:
                continue
            adj[n].append((pu, kind, eid))
            adj[pu].append((n, kind, eid))
        root = tie["f_node"]
        out_order = [root]
        out_parent = {root: (tie["g_node"], "switch", tie["switch"])}
        i = 0
        while i < len(out_order):
            u = out_order[i]
            i += 1
            for v, kind, eid in adj[u]:
                if v in out_parent:
                    continue
                out_parent[v] = (u, kind, eid)
                out_order.append(v)
        if set(out_order) != set(part_nodes):
            raise ValueError(f"{fid}: part fed over {tie['switch']} is not the expected node set")
        return out_order, out_parent

    def case_model(self, fid, case):
        key = (fid, case["label"])
        if key in self.case_models:
            return self.case_models[key]
        g = self.grid
        by_src = {}
        for part in case["parts"]:
            by_src.setdefault((part["tie"]["to_kind"], part["tie"]["to"]), []).append(part)
        supplies, changed = [], [fid]
        for (kind, src), parts in by_src.items():
            if kind == "feeder":
                s = self.supply_normal(src)
                changed.append(src)
            else:
                s = {"busbar": src, "feeder": None, "u_kv": self.busbar_u(src), "rated_a": None,
                     "order": [], "parent": {}}
            for part in parts:
                o2, p2 = self.part_tree(fid, part["tie"], part["nodes"], case["opened"])
                s["order"] += o2
                s["parent"].update(p2)
            supplies.append(s)
        m = CaseModel(self, f"{fid} {case['label']}", supplies, changed)
        self.case_models[key] = m
        self.case_base(fid, case, m)
        return m

    def case_base(self, fid, case, m):
        """pandapower on EVERY step at x = 0 (decides passes_without), and the sweep beside it."""
        t0 = time.monotonic()
        res = [m.pp_flow(t) for t in range(self.T)]
        if any(r is None for r in res):
            bad = [self.ts[t] for t, r in enumerate(res) if r is None]
            log(f"  case {m.label}: pandapower diverged at x = 0 on {len(bad)} steps")
        keys = ("vm", "seg_pct", "head_pct", "p_head", "q_head")
        nanrow = {"vm": np.full((1, len(m.nodes)), 0.0), "seg_pct": np.full((1, len(m.seg_ids)), 1e9),
                  "head_pct": np.full((1, len(m.supplies)), 1e9), "p_head": np.zeros((1, len(m.supplies))),
                  "q_head": np.zeros((1, len(m.supplies)))}
        bp = {k: np.concatenate([(r if r is not None else nanrow)[k] for r in res]) for k in keys}
        bp["bad"] = np.array([r is None for r in res])
        bp["tsel"] = np.arange(self.T)
        m.base_pp = bp
        ok, u = m.ok(bp)
        _, gl = m.util(bp)
        m.base_util = u
        m.passes_without = bool(ok.all())
        sw = m.sweep(np.arange(self.T))
        m.base_sw = sw
        good = ~bp["bad"] & ~sw["bad"]
        d = {"vm": float(np.abs(sw["vm"] - bp["vm"])[good].max()),
             "seg_pct": float(np.abs(sw["seg_pct"] - bp["seg_pct"])[good].max()) if len(m.seg_ids) else 0.0,
             "head_pct": float(np.nan_to_num(np.abs(sw["head_pct"] - bp["head_pct"])[good]).max()),
             "p_head_kw": float(np.abs(sw["p_head"] - bp["p_head"])[good].max())}
        for k, v in d.items():
            self.sweep_vs_pp[k] = max(self.sweep_vs_pp.get(k, 0.0), v)
        worst = {k: float(v.max()) for k, v in u.items()}
        broken = [k for k in ORDER if worst[k] > 1.0 + 1e-12] + (["diverged"] if bp["bad"].any() else [])
        info = {"label": case["label"], "kind": case["kind"], "opened": case["opened"],
                "supplies": [{"busbar": s["busbar"], "feeder": s["feeder"],
                              "ties": [p["tie"]["switch"] for p in case["parts"]
                                       if p["tie"]["to"] == (s["feeder"] or s["busbar"])]} for s in m.supplies],
                "nodes": len(m.nodes), "passes_without": m.passes_without,
                "worst_utilization_without": {k: round(v, 5) for k, v in worst.items()},
                "max_loading_without_pct": round(float(m.loading(bp).max()), 3),
                "min_voltage_without_pu": round(float(bp["vm"][~bp["bad"]].min()), 6),
                "max_voltage_without_pu": round(float(bp["vm"][~bp["bad"]].max()), 6),
                "sweep_vs_pp_max_abs_diff": {k: float(f"{v:.3g}") for k, v in d.items()}}
        info["overvoltage_only"] = bool(broken == ["voltage"] and
                                        (bp["vm"].max(axis=1) > self.lim.v_max + 1e-12).any() and
                                        (bp["vm"].min(axis=1) >= self.lim.v_min - 1e-12).all())
        if broken:
            b = broken[0]
            if b == "diverged":
                info.update({"binding_without": "voltage", "binding_ts": self.ts[int(np.argmax(bp["bad"]))],
                             "binding_element": None, "note": "no power flow solution at some steps"})
            else:
                t = int(u[b].argmax())
                info.update({"binding_without": b, "binding_ts": self.ts[t],
                             "binding_element": m.elements(bp, t, gl)[b], "broken_without": broken})
        m.info = info
        log(f"  case {m.label}: {len(m.nodes)} nodes, {len(m.supplies)} supplies, passes without: "
            f"{m.passes_without}, worst {info['worst_utilization_without']}, "
            f"{self.T} pandapower flows in {time.monotonic() - t0:.1f}s")

    # ------------------------------------------------------------------ candidates
    def candidates(self, app):
        g = self.grid
        kv = float(app.get("voltage_kv") or 0) or None
        radius = float(app.get("max_distance_m") or self.a.radius)
        out, busbars = [], []
        for nid, nd in g.nodes.items():
            if not nd["in_service"]:
                continue
            if kv is not None and abs(float(nd["kv"]) - kv) > 1e-6:
                continue
            d = geodesic_m(app["lon"], app["lat"], nd["lon"], nd["lat"])
            if d > radius:
                continue
            if g.is_busbar(nid):
                busbars.append(nid)
                continue
            if nid not in g.feeder_of:
                continue
            out.append({"node": nid, "d": d, "edge": abs(d - radius) < 10.0})
        out.sort(key=lambda c: (c["d"], c["node"]))
        return out, radius, sorted(busbars)

    # ------------------------------------------------------------------ one case
    def eval_case(self, app, prof, tanphi, nid, m):
        a, lim = self.a, self.lim
        demand = float(app["demand_kw"])
        res = {"label": m.info["label"], "kind": m.info["kind"]}
        if m.info["kind"] == "split":
            res["opened"] = m.info["opened"]
        res["candidate_fed_from"] = m.supplies[m.sup_of[m.idx[nid]]]["feeder"] or m.supplies[m.sup_of[m.idx[nid]]]["busbar"]
        cache = {}

        def pp_at(t, x):
            key = (int(t), int(x))
            if key not in cache:
                p = x * prof[t]
                cache[key] = m.pp_flow(int(t), nid, p, p * tanphi)
            return cache[key]

        def pp_ok(t, x):
            r = pp_at(t, x)
            if r is None:
                return False
            return bool(m.ok(r)[0][0])

        def all_hold(x, steps):
            return all(pp_ok(t, x) for t in steps)

        kept = np.array([], dtype=int)
        if not m.passes_without:
            h_kw = 0
            res.update({"headroom_kw": 0, "passes_without": False, "binding": m.info["binding_without"],
                        "binding_element": m.info.get("binding_element"), "binding_ts": m.info["binding_ts"]})
            if m.info.get("overvoltage_only"):
                res["screen_relief_range_kw"] = self.relief_range(m, nid, prof, tanphi)
        else:
            tsel = np.where(prof > 0)[0]
            # ---------- screen: per-step bisection on the sweep, dropping steps that cannot be least
            lo = np.zeros(len(tsel))
            hi = np.full(len(tsel), CAP_KW)

            def sw_ok(x, rows):
                p = x * prof[tsel[rows]]
                r = m.sweep(tsel[rows], nid, p, p * tanphi)
                return m.ok(r)[0]
            rows = np.arange(len(tsel))
            okcap = sw_ok(np.full(len(tsel), CAP_KW), rows) if len(tsel) else np.zeros(0, dtype=bool)
            active = ~okcap
            lo[okcap] = CAP_KW
            for _ in range(80):
                if not active.any():
                    break
                ub = hi[~okcap].min()             # the least headroom is below every failing step's hi
                active &= ~(lo > ub * (1 + a.margin) + 2.0)
                active &= (hi - lo) > 0.01
                if not active.any():
                    break
                rows = np.where(active)[0]
                mid = 0.5 * (lo[rows] + hi[rows])
                ok = sw_ok(mid, rows)
                lo[rows] = np.where(ok, mid, lo[rows])
                hi[rows] = np.where(ok, hi[rows], mid)
            step_h = np.where(okcap, np.inf, lo)
            est = float(step_h.min()) if len(step_h) else math.inf
            if math.isinf(est):
                h_kw = int(CAP_KW)
                res.update({"headroom_kw": h_kw, "passes_without": True, "binding": None,
                            "note": f"no check breaks up to {CAP_KW:.0f} kW"})
            else:
                order = np.argsort(step_h)
                finite = order[np.isfinite(step_h[order])]
                keep = [i for i in finite if step_h[i] <= est * (1 + a.margin) + 1.0]
                if len(keep) < a.min_steps:
                    keep = list(finite[:a.min_steps])
                kept = tsel[np.array(keep, dtype=int)]
                near_i = [i for i in finite if step_h[i] <= est + max(2.0, 0.002 * est)]
                if len(near_i) < a.near_steps:
                    near_i = list(finite[:a.near_steps])
                near = list(tsel[np.array(near_i, dtype=int)])

                def bisect(start, steps):
                    lo_x = max(0, int(start))
                    if not all_hold(lo_x, steps):
                        hi_x, width = lo_x, 1
                        while True:
                            lo_x = max(0, hi_x - width)
                            if lo_x == 0 or all_hold(lo_x, steps):
                                break
                            hi_x, width = lo_x, width * 2
                    else:
                        hi_x, width = lo_x + 1, 1
                        while hi_x <= CAP_KW and all_hold(hi_x, steps):
                            lo_x, width = hi_x, width * 2
                            hi_x = lo_x + width
                    while hi_x - lo_x > 1:
                        mid = (lo_x + hi_x) // 2
                        if all_hold(mid, steps):
                            lo_x = mid
                        else:
                            hi_x = mid
                    return lo_x
                h_kw = bisect(math.floor(est), near)
                while True:
                    failing = [int(t) for t in kept if not pp_ok(t, h_kw)]
                    if not failing:
                        break
                    log(f"  {app['id']}/{nid}/{m.info['label']}: {len(failing)} kept steps fail at {h_kw} kW; re-bisecting")
                    near = sorted(set(int(t) for t in near) | set(failing))
                    h_kw = bisect(h_kw, near)
                kept = np.array(sorted(set(int(t) for t in kept) | set(int(t) for t in near)))
                # classify at headroom + 1 kW
                broken, ties, worst_u, bt = set(), set(), {}, {}
                for t in near:
                    r = pp_at(t, h_kw + 1)
                    if r is None:
                        broken.add("voltage")
                        bt.setdefault("voltage", (math.inf, int(t), None))
                        continue
                    ok, u = m.ok(r)
                    _, gl = m.util(r)
                    el = m.elements(r, 0, gl)
                    for k in ORDER:
                        v = float(u[k][0])
                        worst_u[k] = max(worst_u.get(k, 0.0), v)
                        if v > 1.0 + 1e-12:
                            broken.add(k)
                        if v >= 1.0 - lim.tie:
                            ties.add(k)
                        if v > bt.get(k, (-1,))[0]:
                            bt[k] = (v, int(t), el[k])
                if not broken:
                    raise SystemExit(f"{app['id']}/{nid}/{m.info['label']}: nothing breaks at {h_kw + 1} kW")
                cands = broken | ties
                binding = min(cands, key=ORDER.index)
                res.update({"headroom_kw": int(h_kw), "passes_without": True, "binding": binding,
                            "binding_element": bt[binding][2], "binding_ts": self.ts[bt[binding][1]],
                            "binding_alternatives": sorted(cands - {binding}, key=ORDER.index),
                            "utilization_at_headroom_plus_1": {k: round(v, 5) for k, v in worst_u.items()},
                            "screen_headroom_kw": round(est, 2), "kept_steps": int(len(kept)),
                            "bisection_steps": int(len(near))})
        # ---------- at the application's demand: worst segment-or-head loading (every step)
        allt = np.arange(self.T)
        p = demand * prof
        r = m.sweep(allt, nid, p, p * tanphi)
        L = m.loading(r)
        L = np.where(r["bad"], np.inf, L)
        pick = list(np.argsort(-L)[:a.after_steps])
        vmin_t = int(np.argmin(np.where(r["bad"], -np.inf, r["vm"].min(axis=1))))
        best_l, best_t, vmin, conv = -1.0, None, None, True
        for t in sorted(set(int(x) for x in pick) | {vmin_t}):
            rr = m.pp_flow(t, nid, p[t], p[t] * tanphi)
            if rr is None:
                conv = False
                continue
            lt = float(m.loading(rr)[0])
            if t in pick and lt > best_l:
                best_l, best_t = lt, t
            v = float(rr["vm"].min())
            vmin = v if vmin is None else min(vmin, v)
        res["at_demand"] = {"loading_pct": round(best_l, 3) if conv and best_t is not None else None,
                            "loading_ts": self.ts[best_t] if best_t is not None else None,
                            "min_voltage_pu": round(vmin, 6) if vmin is not None else None,
                            "converged": conv,
                            "sweep_loading_pct": round(float(L.max()), 3) if np.isfinite(L.max()) else None}
        res["_kept"] = kept
        return res

    # ------------------------------------------------------------------ diagnostic
    def relief_range(self, m, nid, prof, tanphi):
        """(Diagnostic, screen only.) For a case that fails at x = 0 only by overvoltage, the
        range of new load [lo, hi] kW over which it would pass: lo = the least load that pulls
        every step's highest voltage under v_max, hi = the most that keeps every other limit.
        None where no load can relieve it (a failing step with profile 0) or lo > hi."""
        lim = self.lim
        bad_t = np.where(m.base_util["voltage"] > 1.0 + 1e-12)[0]
        if (prof[bad_t] <= 0).any():
            return None
        tsel = np.where(prof > 0)[0]

        def run(x, rows):
            p = x * prof[tsel[rows]]
            r = m.sweep(tsel[rows], nid, p, p * tanphi)
            u, _ = m.util(r)
            over_ok = r["vm"].max(axis=1) <= lim.v_max + 1e-12
            rest_ok = ~r["bad"] & (r["vm"].min(axis=1) >= lim.v_min - 1e-12)
            for k in ("segment_thermal", "head_thermal", "substation_transformer"):
                rest_ok &= u[k] <= 1.0 + 1e-12
            return over_ok & ~r["bad"], rest_ok
        # lo: only the failing steps matter (the others pass at 0)
        rows = np.searchsorted(tsel, bad_t)
        a_lo, a_hi = np.zeros(len(rows)), np.full(len(rows), 100.0)
        while True:                          # bracket: double until every failing step is relieved
            ok = run(a_hi, rows)[0]
            if ok.all():
                break
            if a_hi.max() >= CAP_KW:
                return None
            a_lo, a_hi = np.where(ok, a_lo, a_hi), np.where(ok, a_hi, 2 * a_hi)
        for _ in range(40):
            mid = 0.5 * (a_lo + a_hi)
            ok = run(mid, rows)[0]
            a_lo, a_hi = np.where(ok, a_lo, mid), np.where(ok, mid, a_hi)
            if (a_hi - a_lo).max() < 0.01:
                break
        lo = float(a_hi.max())
        # hi: the most load keeping every other limit (all steps with profile > 0)
        rows = np.arange(len(tsel))
        b_lo, b_hi = np.zeros(len(tsel)), np.full(len(tsel), CAP_KW)
        act = ~run(b_hi, rows)[1]
        b_lo[~act] = CAP_KW
        for _ in range(60):
            if not act.any():
                break
            act &= ~(b_lo > b_hi[act].min() + 1.0) & ((b_hi - b_lo) > 0.01)
            r_ = np.where(act)[0]
            if not len(r_):
                break
            mid = 0.5 * (b_lo[r_] + b_hi[r_])
            ok = run(mid, r_)[1]
            b_lo[r_] = np.where(ok, mid, b_lo[r_])
            b_hi[r_] = np.where(ok, b_hi[r_], mid)
        hi = float(b_lo.min())
        if math.ceil(lo) > math.floor(hi):
            return None
        return [int(math.ceil(lo)), int(math.floor(hi))]

    # ------------------------------------------------------------------ verification
    def verify(self, app, prof, tanphi, cand, case):
        """pandapower on EVERY step with profile > 0 at headroom and headroom + 1 kW."""
        m = self.case_models[(cand["feeder"], case["label"])]
        nid = cand["node"]
        h = case["headroom_kw"]
        tsel = [int(t) for t in np.where(prof > 0)[0]]
        out = {}
        for x in (h, h + 1):
            fails = []
            for t in tsel:
                p = x * prof[t]
                r = m.pp_flow(t, nid, p, p * tanphi)
                if r is None:
                    fails.append(("diverged", t))
                    continue
                ok, u = m.ok(r)
                if not ok[0]:
                    fails.append(([k for k in ORDER if u[k][0] > 1 + 1e-12], t))
            out[x] = fails
        kept = set(int(t) for t in case["_kept"])
        fail_steps = {t for _, t in out[h + 1]}
        return {"application": app["id"], "node": nid, "feeder": cand["feeder"], "case": case["label"],
                "headroom_kw": h, "steps": len(tsel),
                "all_hold_at_headroom": len(out[h]) == 0,
                "fails_at_headroom_plus_1": len(out[h + 1]) > 0,
                "failing_steps_at_plus_1": len(fail_steps),
                "failing_steps_not_kept": len(fail_steps - kept),
                "ok": len(out[h]) == 0 and len(out[h + 1]) > 0}

    # ------------------------------------------------------------------ run
    def run(self, apps):
        self.sweep_vs_pp = {}
        results, verify_log = [], []
        only = set(self.a.only.split(",")) if self.a.only else None
        for app in apps:
            if only and app["id"] not in only:
                continue
            if app.get("kind", "load") != "load":
                log(f"{app['id']}: kind {app.get('kind')} skipped (N-1 transfer oracle: loads)")
                continue
            t0 = time.monotonic()
            prof = profile_of(app, self.steps)
            pf = float(app.get("power_factor", 0.9) or 0.9)
            tanphi = math.tan(math.acos(min(1.0, pf)))
            cands, radius, busbars = self.candidates(app)
            if self.a.max_candidates:
                cands = cands[:self.a.max_candidates]
            log(f"{app['id']}: {app['demand_kw']} kW pf {pf}, {len(cands)} feeder candidates within {radius:.0f} m"
                f" (busbars skipped: {busbars}), profile {'yes' if app.get('profile') else 'flat'}")
            out = []
            for i, c in enumerate(cands):
                nid = c["node"]
                fid = self.grid.feeder_of[nid]
                row = {"node": nid, "node_type": self.grid.nodes[nid]["node_type"], "feeder": fid,
                       "distance_m": round(c["d"], 2)}
                if c["edge"]:
                    row["near_radius_edge"] = True
                cases = []
                for case in self.cases[fid]:
                    m = self.case_model(fid, case)
                    cases.append(self.eval_case(app, prof, tanphi, nid, m))
                if not cases:
                    row.update({"n1_case_headroom_kw": 0, "best_case": None, "best_case_binding": None,
                                "best_case_loading_pct": None,
                                "detail": "no tie", "cases": []})
                else:
                    def key(cs):
                        ld = cs["at_demand"]["loading_pct"]
                        return (-cs["headroom_kw"], math.inf if ld is None else ld, cs["label"])
                    best = min(cases, key=key)
                    row.update({"n1_case_headroom_kw": best["headroom_kw"], "best_case": best["label"],
                                "best_case_binding": best["binding"],
                                "best_case_loading_pct": best["at_demand"]["loading_pct"],
                                "cases": cases})
                row["demand_within_n1_case_headroom"] = float(app["demand_kw"]) <= row["n1_case_headroom_kw"]
                out.append(row)
                if (i + 1) % 10 == 0 or i + 1 == len(cands):
                    log(f"  {app['id']}: {i + 1}/{len(cands)} candidates, last {nid} ({fid}) "
                        f"n1 {row['n1_case_headroom_kw']} via {row['best_case']}")
            # verification sample: nearest, farthest, tightest (with a search), one per binding
            fc = [r for r in out if r["cases"] and any(cs["passes_without"] and cs["binding"] for cs in r["cases"])]
            sample = []
            if fc and self.a.verify > 0:
                pick = [fc[0], fc[-1], min(fc, key=lambda r: r["n1_case_headroom_kw"])]
                by_bind = {}
                for r in fc:
                    b = next(cs for cs in r["cases"] if cs["label"] == r["best_case"])
                    by_bind.setdefault(b.get("binding"), r)
                pick += list(by_bind.values())
                for r in pick:
                    if r not in sample:
                        sample.append(r)
                sample = sample[:self.a.verify]
            for r in sample:
                for case in r["cases"]:
                    if not case["passes_without"] or case.get("binding") is None:
                        continue
                    v = self.verify(app, prof, tanphi, r, case)
                    verify_log.append(v)
                    log(f"  verify {app['id']}/{r['node']}/{case['label']}: {v}")
            for r in out:
                for cs in r["cases"]:
                    cs.pop("_kept", None)
            results.append({"id": app["id"], "demand_kw": app["demand_kw"], "power_factor": pf,
                            "voltage_kv": app.get("voltage_kv"), "max_distance_m": radius,
                            "profile": "given" if app.get("profile") is not None else "flat",
                            "busbars_skipped": busbars,
                            "seconds": round(time.monotonic() - t0, 1), "candidates": out})
            log(f"{app['id']}: done in {time.monotonic() - t0:.1f}s")
        return results, verify_log


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gridpack", default=DEFAULT_GRIDPACK)
    ap.add_argument("--applications", default=os.path.join(HERE, "applications.json"))
    ap.add_argument("--out", default=os.path.join(HERE, "expected.json"))
    ap.add_argument("--v-min", type=float, default=0.93)
    ap.add_argument("--v-max", type=float, default=1.07)
    ap.add_argument("--thermal-pct", type=float, default=100.0)
    ap.add_argument("--substation-pct", type=float, default=100.0)
    ap.add_argument("--radius", type=float, default=2000.0, help="default max_distance_m")
    ap.add_argument("--margin", type=float, default=0.02,
                    help="confirm the headroom with pandapower on every step within this share of the least")
    ap.add_argument("--min-steps", type=int, default=5, help="at least this many confirmation steps")
    ap.add_argument("--near-steps", type=int, default=3, help="at least this many bisection steps")
    ap.add_argument("--after-steps", type=int, default=2, help="pandapower steps for the loading at demand")
    ap.add_argument("--tie", type=float, default=1e-4)
    ap.add_argument("--verify", type=int, default=3,
                    help="candidates per application whose every passing case is checked on every step")
    ap.add_argument("--only", default=None, help="comma-separated application ids")
    ap.add_argument("--max-candidates", type=int, default=0, help="(testing) first N candidates per application")
    ap.add_argument("--insert-switch", action="append", metavar="SEG@NODE",
                    help="(self-test) cut SEG at NODE with a new normally-closed switch, to exercise splits")
    ap.add_argument("--no-numba", action="store_true")
    a = ap.parse_args()
    apps = json.load(open(a.applications))
    o = Oracle(a)
    results, verify_log = o.run(apps)
    g = o.grid
    ncands = sum(len(r["candidates"]) for r in results)
    ncases = sum(len(c["cases"]) for r in results for c in r["candidates"])
    summary = {
        "applications": len(results), "candidates": ncands, "cases": ncases,
        "candidates_without_tie": sum(1 for r in results for c in r["candidates"] if not c["cases"]),
        "candidates_with_a_passing_case": sum(1 for r in results for c in r["candidates"]
                                              if any(cs["passes_without"] for cs in c["cases"])),
        "candidates_with_positive_headroom": sum(1 for r in results for c in r["candidates"]
                                                 if c["n1_case_headroom_kw"] > 0),
        "candidates_demand_within_n1_case_headroom": sum(1 for r in results for c in r["candidates"]
                                                         if c["demand_within_n1_case_headroom"]),
        "binding_counts": {},
    }
    for r in results:
        for c in r["candidates"]:
            for cs in c["cases"]:
                k = str(cs.get("binding"))
                summary["binding_counts"][k] = summary["binding_counts"].get(k, 0) + 1
    pptime = sum(m.pp_time for m in o.case_models.values())
    out = {
        "grid": g.name,
        "generated_by": "tests/n1/oracle.py",
        "pandapower": pp.__version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "gridpack": os.path.relpath(a.gridpack, HERE),
        "grid_modifications": g.modified,
        "window": {"from": o.ts[0], "to": o.ts[-1], "steps": o.T},
        "limits": {"thermal_pct": a.thermal_pct, "v_min_pu": a.v_min, "v_max_pu": a.v_max,
                   "substation_transformer_pct": a.substation_pct, "candidate_radius_m": a.radius,
                   "headroom_resolution_kw": 1, "tie_tolerance": a.tie, "search_cap_kw": CAP_KW,
                   "tie_order": ORDER},
        "ties": {fid: [t["switch"] for t in o.ties[fid]] for fid in sorted(g.feeders)},
        "tie_details": {fid: [{"switch": t["switch"], "node": t["f_node"], "other_node": t["g_node"],
                               "to": t["to"], "to_kind": t["to_kind"]} for t in o.ties[fid]]
                        for fid in sorted(g.feeders)},
        "feeder_cases": {fid: [o.case_models[(fid, cs["label"])].info for cs in o.cases[fid]
                               if (fid, cs["label"]) in o.case_models] for fid in sorted(g.feeders)},
        "modelling": (
            "Contingency: loss of the candidate's feeder F's head element (the segment or closed switch "
            "from head_node to first_node); all of F is unsupplied. Ties of F: normally-open switches "
            "with one side on F and the other on an in-service node of another feeder G (or a busbar). "
            "Feeders are traced from first_node through in-service segments and closed switches, never "
            "through a busbar. Case 'tie' T: G's busbar (slack at G's measured head u_kv of the step) "
            "feeds G's whole tree and, through T, F's whole tree re-rooted at T's F-side node. Case "
            "'split' T1+T2/S: S (a normally-closed switch inside F, not F's head element) is opened; "
            "the part holding first_node is fed over T1, the part below S over T2; parts on the same "
            "supplying feeder hang on one tree. Lines from r_ohm_per_km, x_ohm_per_km and length_m, "
            "no line charging; closed switches and the closed tie are ideal. Every distribution "
            "transformer is a constant-PQ load at its measured p_kw/q_kvar; the applicant a constant-PQ "
            "load x*profile(step) kW, q = p*tan(acos(pf)) (lagging), at the candidate; profile = the "
            "application's 96 factors at the UTC quarter-hour of ts, else 1.0. Checks at every step: "
            "segment_thermal (every segment of the trees, max(i_from,i_to) <= thermal_pct of rated_a), "
            "head_thermal (each supplying feeder's head current |S|/(sqrt3*U) <= thermal_pct of its "
            "rated_a; a busbar supply has no head check), voltage (every node of the trees, busbars "
            "excluded as they are held at their measured voltage, within v_min..v_max), "
            "substation_transformer (per supplying busbar group: sum of its transformers' measured "
            "p_kw/q_kvar less the MEASURED head p_kw/q_kvar of every feeder whose supply changed (F and "
            "every supplying G) that leaves the group, plus the new heads' P,Q from the flow; |S| <= "
            "substation_pct of the group's summed rated_kva). headroom_kw = the largest integer kW x "
            "keeping every check at every step, 0 where the case fails at x = 0. binding = the first "
            "in tie_order among the checks broken at headroom+1 kW and those within tie_tolerance of "
            "their limit there (or the first broken at x = 0). n1_case_headroom_kw = max over cases; "
            "best_case = the case of largest headroom, ties by the lower worst segment-or-head loading "
            "over every step at demand_kw (at_demand.loading_pct), then by label."),
        "method": {"screen": "exact AC backward/forward sweep (numpy) of the same forest, per-step bisection "
                             "with steps that cannot be the least dropped early",
                   "exact": f"pandapower at x = 0 on every step of every case; pandapower bisection to 1 kW "
                            f"on the steps within max(2 kW, 0.2 %) of the least screened headroom (at least "
                            f"{a.near_steps}); confirmation at the headroom on every step within "
                            f"{a.margin:.0%} of the least (at least {a.min_steps}); classification at "
                            f"headroom + 1 kW",
                   "sweep_vs_pandapower_case_base_max_abs_diff": {k: float(f"{v:.3g}") for k, v in o.sweep_vs_pp.items()},
                   "pandapower_runs": o.pp_runs, "pandapower_s": round(pptime, 1),
                   "pandapower_ms_per_run": round(pptime / max(o.pp_runs, 1) * 1000, 2), "numba": o.use_numba},
        "summary": summary,
        "self_check": {"verification_all_steps": verify_log,
                       "verification_ok": all(v["ok"] for v in verify_log),
                       "normal_state_baseline": baseline_check(o, a.gridpack)},
        "head_readings": o.head_source,
        "topology_warnings": g.warnings,
        "timing": {"total_s": round(time.monotonic() - T0, 1)},
        "applications": results,
    }
    with open(a.out, "w") as fh:
        json.dump(out, fh, indent=1)
    log(f"wrote {a.out}: {summary}")


def baseline_check(o, folder):
    """Normal-state sweep of every feeder against the fixture's independent baseline (if any)."""
    out = {}
    path = os.path.join(folder, "expected.json")
    ref = {}
    if os.path.exists(path):
        try:
            ref = json.load(open(path)).get("baseline", {}).get("feeders", {})
        except Exception:
            ref = {}
    diffs = {}
    for fid, (m, r) in o.normal.items():
        mine = {"min_voltage_pu": float(r["vm"].min()), "max_voltage_pu": float(r["vm"].max()),
                "max_loading_pct": float(m.loading(r).max()),
                "head_p_model_vs_measured_max_abs_kw": float(np.nanmax(np.abs(r["p_head"][:, 0] - o.head_pm[fid])))}
        out[fid] = {k: round(v, 6) for k, v in mine.items()}
        if fid in ref:
            for k in ("min_voltage_pu", "max_voltage_pu", "max_loading_pct"):
                if k in ref[fid]:
                    diffs[k] = max(diffs.get(k, 0.0), abs(mine[k] - ref[fid][k]))
    return {"feeders": out, "max_abs_diff_vs_fixture_expected_baseline": {k: float(f"{v:.3g}") for k, v in diffs.items()}}


if __name__ == "__main__":
    main()
