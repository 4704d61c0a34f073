# roost: put this node on the fabric. Docker (optional), bpffs, the images,
# the checked config and the compose stack, in that order; roost-sync where
# the pillar enables it (roost.sync).
include:
  - roost.docker
  - roost.bpffs
  - roost.images
  - roost.config
  - roost.compose
  - roost.sync
