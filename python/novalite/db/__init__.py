"""The control plane's database: models, migrations and the Database facade."""

from novalite.db.database import UNSET, Database

__all__ = ["UNSET", "Database"]
