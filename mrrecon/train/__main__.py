"""``python -m mrrecon.train CONFIG`` and ``accelerate launch -m mrrecon.train CONFIG``."""

from mrrecon.train.cli import main

if __name__ == "__main__":
    main()
