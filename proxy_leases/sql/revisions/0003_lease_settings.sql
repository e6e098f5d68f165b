-- The operator's knobs, in one row that can be read and changed with plain SQL:
--   UPDATE proxy_lease_settings SET lease_duration = '2 minutes';
-- A change applies to the next grant or renewal; leases already granted keep their end.

CREATE TABLE public.proxy_lease_settings (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    lease_duration interval NOT NULL DEFAULT '5 minutes'
                   CHECK (lease_duration > interval '0'),
    orphan_grace   interval NOT NULL DEFAULT '1 minute'
                   CHECK (orphan_grace >= interval '0'),
    CONSTRAINT proxy_lease_settings_grace_shorter_than_lease CHECK (orphan_grace < lease_duration)
);

INSERT INTO public.proxy_lease_settings DEFAULT VALUES;

COMMENT ON TABLE public.proxy_lease_settings IS
    'proxy-leases settings: exactly one row. UPDATE it; it cannot be emptied.';
COMMENT ON COLUMN public.proxy_lease_settings.singleton IS 'Always true: keeps the table to one row.';
COMMENT ON COLUMN public.proxy_lease_settings.lease_duration IS
    'How long a grant or a renewal keeps a proxy. A held proxy whose worker sends no heartbeat for this '
    'long is freed by the next sweep, whatever else holds.';
COMMENT ON COLUMN public.proxy_lease_settings.orphan_grace IS
    'How long after acquiring a proxy a worker may go without a task in processing before the sweeper '
    'treats the proxy as orphaned. Covers workers that take the proxy first and the task second.';

CREATE FUNCTION public.tg_proxy_lease_settings__keep_the_row()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    RAISE EXCEPTION 'proxy_lease_settings must keep its one row'
        USING ERRCODE = 'restrict_violation',
              HINT = 'Change a setting with UPDATE proxy_lease_settings SET ...';
END
$$;

COMMENT ON FUNCTION public.tg_proxy_lease_settings__keep_the_row() IS
    'Trigger: refuses DELETE and TRUNCATE on proxy_lease_settings, which every lease reads.';

CREATE TRIGGER keep_the_row
    BEFORE DELETE OR TRUNCATE ON public.proxy_lease_settings
    FOR EACH STATEMENT EXECUTE FUNCTION public.tg_proxy_lease_settings__keep_the_row();

COMMENT ON TRIGGER keep_the_row ON public.proxy_lease_settings IS
    'proxy-leases: the settings row can be updated, never deleted or truncated.';
