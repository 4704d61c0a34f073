# An example top file: every node of the fabric gets roost. Match your
# nodes by grain or nodegroup instead of '*' where other minions exist.
base:
  '*':
    - roost
