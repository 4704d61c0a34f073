{%- from "roost/map.jinja" import roost with context %}
# roost.bpffs: the BPF filesystem on /sys/fs/bpf, with shared propagation so
# that the loader container's rshared mount of it works and its pins outlive
# the container.
{%- if roost.bpffs.mount %}
roost-bpffs:
  mount.mounted:
    - name: /sys/fs/bpf
    - device: bpffs
    - fstype: bpf
    - opts: rw,nosuid,nodev,noexec,relatime,mode=700
    - mkmnt: True
    - persist: {{ roost.bpffs.persist }}

roost-bpffs-shared:
  cmd.run:
    - name: mount --make-shared /sys/fs/bpf
    - unless: findmnt -n -o PROPAGATION /sys/fs/bpf | grep -qw shared
    - require:
      - mount: roost-bpffs
{%- endif %}
