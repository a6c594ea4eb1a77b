"""Who may use the addon's actions (README, Access rights).

Any user can call a public method of a model over RPC, on any record ids, whatever the views
show: each action checks, before it does anything, the user's group and then that its records
belong to the companies the user works in. The errors name no record, since the records refused
may be another company's (Odoo's own record-rule errors list them for users in debug mode).
"""

from odoo import models
from odoo.exceptions import AccessError, UserError

MANAGER_GROUP = "visionmetrics_whatsapp.group_whatsapp_manager"
SETTINGS_GROUP = "base.group_system"


def check_manager(env):
    """Raise an AccessError unless the user is a WhatsApp administrator (or we run as superuser)."""
    if not (env.su or env.user.has_group(MANAGER_GROUP)):
        raise AccessError(env._("Only WhatsApp administrators can do this."))


def check_settings_admin(env):
    """Raise an AccessError unless the user is a Settings administrator (or we run as superuser)."""
    if not (env.su or env.user.has_group(SETTINGS_GROUP)):
        raise AccessError(env._("Only Settings administrators can do this."))


def check_records(records, operation="write"):
    """Raise an AccessError unless the user may ``operation`` every record of ``records`` (access
    rights and company rules), naming none of them."""
    if records._filtered_access(operation) != records:
        raise _company_error(records.env)


def check_company(env, company):
    """Raise an AccessError unless ``company`` is one of the companies the user works in now."""
    if not env.su and company not in env.companies:
        raise _company_error(env)


def _company_error(env):
    return AccessError(env._("You can only act on the WhatsApp records of the companies you are working in."))


class VmWhatsappCompanyGuard(models.AbstractModel):
    """Inherited by the addon's models: a relation to a record of a company the record does not
    belong to is refused without naming either (Odoo's own error lists the records' names, and
    the related one may be another company's, e.g. an integration given to a campaign link)."""

    _name = "vm.whatsapp.company.guard"
    _description = "WhatsApp: company checks that name no record"

    def _check_company(self, fnames=None):  # pylint: disable=missing-return
        try:
            super()._check_company(fnames)
        except UserError:
            raise _company_error(self.env) from None
