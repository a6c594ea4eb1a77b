# Plain helpers with no Odoo import (tested without Odoo in the top-level tests/).
