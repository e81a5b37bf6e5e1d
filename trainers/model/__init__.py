"""The networks of the paper (Qiao et al., ICML 2018, "Gradually Updated Neural Networks"),
top to bottom:

- `spec`: plain-data architectures, a layer <N, P, K, M> (`StageSpec`), a network
  (`NetworkSpec`) and the paper's models by name; no torch, the search driver prices these.
- `update_unit`: one segment's update, the paper's update unit (Figure 4) stacked M times, plus
  the CIFAR models' projection shortcut.
- `segmented`: what both layers share, N channels in P segments each with its own update, and
  the grouped batch norm.
- `sunn_layer`: `SUNNLayer`, every segment updated from the same input.
- `gunn_layer`: `GUNNLayer`, segments updated one after another, and Algorithm 1 (the
  memory-efficient forward/backward, one autograd Function).
- `state_conv`: the fused 1x1 conv Algorithm 1 runs over the state that is never built.
- `network`: whole networks (stem, layers, transitions, head) and `build_model`.
- `cost`: parameters, MACs and activation memory of a spec without building it.
"""
