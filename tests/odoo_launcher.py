"""Start Odoo like its odoo-bin script does (a file path, so that Odoo's prefork server can start
its gevent process again with the same command)."""

import os

os.environ["TZ"] = "UTC"

import odoo  # noqa: E402

if __name__ == "__main__":
    odoo.cli.main()
