"""Platform plumbing: how to reach each platform (``sandbox``: supervisor, fault proxy, nftables; ``kubernetes``: the
API server; ``chaosmesh``: Chaos Mesh's objects and their validation). No module here imports another one; fault kinds
(``drillbit.faults.pod_kill`` and the others) combine them.
"""
