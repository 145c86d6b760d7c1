"""The mediation service's own checks at its edges, beyond the shared schemas
(``services.common.mediation``): an organization's regions are codes the region data knows."""
from __future__ import annotations

from marshmallow import ValidationError, validates

from services.common import mediation
from services.mediation import regions


class OrganizationSchema(mediation.MediationOrganizationSchema):
    @validates("regions")
    def known_regions(self, value, **kwargs):
        problems = [problem for code in value if (problem := regions.problem(code))]
        if problems:
            raise ValidationError(problems)
