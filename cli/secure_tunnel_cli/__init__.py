"""The ``secure-tunnel`` operator CLI of cdk-iot-secure-tunnel (``Custom::IoTSecureTunnel``).

Modules: :mod:`~secure_tunnel_cli.commands` (the argument parser and the ``connect`` and
``list`` commands), :mod:`~secure_tunnel_cli.token_document` (reading and rotating the token a
secret holds), :mod:`~secure_tunnel_cli.tunnels` (this project's tunnels), and
:mod:`~secure_tunnel_cli.localproxy` (running localproxy with the token in its environment only),
:mod:`~secure_tunnel_cli.errors` (exit codes). It needs boto3 only: no CDK, no Node.js.
"""
