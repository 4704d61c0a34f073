{%- from "roost/map.jinja" import roost with context %}
# roost.docker: the Docker engine and docker-compose from Debian, when the
# pillar says the formula manages them (roost:docker:manage_packages and
# roost:docker:manage_service).
{%- if roost.docker.manage_packages %}
roost-docker-packages:
  pkg.installed:
    - pkgs:
      - docker.io
      - docker-compose
{%- endif %}
{%- if roost.docker.manage_service %}
roost-docker-service:
  service.running:
    - name: docker
    - enable: True
{%-   if roost.docker.manage_packages %}
    - require:
      - pkg: roost-docker-packages
{%-   endif %}
{%- endif %}
