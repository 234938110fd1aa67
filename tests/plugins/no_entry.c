/* A shared object that loads fine but is not an Agape plugin: it exports a
 * function, but not agape_plugin_entry. */
__attribute__((visibility("default"))) int no_entry_version(void);

int no_entry_version(void)
{
    return 1;
}
