"""``python -m mrrecon`` (and ``accelerate launch -m mrrecon``) runs the CLI."""

from mrrecon.cli import main

main()
