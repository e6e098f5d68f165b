def test_head_installed(db):
    assert db.one("SELECT version_num FROM alembic_version") == "0005_sweep_schedule"
