{%- from "roost/map.jinja" import roost, docker_env, roostctl, drain_is with context %}
# roost.undrain: put this node back into service (roostctl undrain): roost-
# agent announces everything again, without GRACEFUL_SHUTDOWN, also while a
# drain is still waiting. Not part of `roost`: apply it by name. Nothing to
# do on a node that is not drained.
roost-undrain:
  cmd.run:
    - name: {{ (roostctl ~ ' undrain') | json }}
    - unless: {{ drain_is('none') | json }}
    - env: {{ docker_env | json }}
