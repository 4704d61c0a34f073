{%- from "roost/map.jinja" import roost, docker_env, roostctl, drain_is with context %}
# roost.drain: take this node out of service without dropping a flow
# (roostctl drain): roost-agent announces everything with GRACEFUL_SHUTDOWN
# (65535:0) for roost:drain:wait, then withdraws it all; the BGP sessions
# stay up. The state waits until the node is drained. It is not part of
# `roost`: apply it by name. The agent keeps the state in
# /var/lib/roost/drain.json, so a restart of its container, an image
# upgrade or a highstate leaves the node drained until roost.undrain.
# Nothing to do on a node that is drained already.
{%- set wait = roost.drain.wait %}
roost-drain:
  cmd.run:
    - name: {{ (roostctl ~ ' drain' ~ ((' --wait ' ~ (wait | string | quote)) if wait is not none and wait != '' else '')) | json }}
    - unless: {{ drain_is('drained') | json }}
    - env: {{ docker_env | json }}
