-- The wrong-call helpers and the swap check go (their rights with them); the previous versions of the four functions,
-- run after this file, put back what 0017_finite_intervals installed.
DROP FUNCTION public.release_proxy(bigint);
DROP FUNCTION public.renew_proxy_lease(bigint);
DROP FUNCTION public.block_proxy(bigint, text);
DROP FUNCTION public.block_proxy(bigint, bigint);
DROP FUNCTION public.raise_if_lease_arguments_swapped(text, bigint, bigint, text, text);
