from odoo import api, models


class LinkTracker(models.Model):
    _inherit = "link.tracker"

    @api.depends("url")
    def _compute_redirected_url(self):  # pylint: disable=missing-return
        """A campaign link's tracker redirects to its wa.me URL exactly as built: link_tracker
        would add utm_* parameters (which wa.me ignores) and encode the text again, spaces as
        '+'. Other trackers are untouched."""
        super()._compute_redirected_url()
        links_sudo = self.env["vm.whatsapp.link"].sudo().with_context(active_test=False)
        ours = set(links_sudo.search([("link_tracker_id", "in", self.ids)]).link_tracker_id.ids)
        for tracker in self:
            if tracker.id in ours:
                tracker.redirected_url = tracker.url
