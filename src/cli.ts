/**
 * The `bottleneck` command line: registers one module per command, in the order of the
 * workflow. Each module (beside its stage) holds its flags and printing. Errors a user or the
 * environment causes (UserError) are printed as one line with their exit code, never a stack.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { adviseCommand } from './advise/advise-command.ts';
import { auditCommand } from './audit/audit-command.ts';
import { backbonesCommand, weightsDownloadCommand } from './backbones/backbones-command.ts';
import { showDownloadProgress } from './backbones/zoo.ts';
import { demoCommand } from './demo/demo-command.ts';
import { evaluateCommand } from './evaluate/evaluate-command.ts';
import { cacheCommand } from './extract/cache-command.ts';
import { extractCommand } from './extract/extract-command.ts';
import { fineTuneCommand } from './finetune/finetune-command.ts';
import { exportCommand } from './predict/export-command.ts';
import { predictCommand } from './predict/predict-command.ts';
import { sweepCommand } from './sweep/sweep-command.ts';
import { trainHeadCommand } from './train-head/train-command.ts';
import { isUserError, UsageError } from './util/errors.ts';

async function main(): Promise<void> {
  showDownloadProgress();
  await yargs(hideBin(process.argv))
    .scriptName('bottleneck')
    .usage('$0 <command> [options]\n\nTransfer learning with cached CNN features.')
    .command(demoCommand)
    .command(backbonesCommand)
    .command(weightsDownloadCommand)
    .command(adviseCommand)
    .command(extractCommand)
    .command(sweepCommand)
    .command(auditCommand)
    .command(trainHeadCommand)
    .command(fineTuneCommand)
    .command(evaluateCommand)
    .command(predictCommand)
    .command(exportCommand)
    .command(cacheCommand)
    .demandCommand(1, 'name a command; see --help')
    .strict()
    .help()
    .fail((msg, err) => {
      // yargs reports its own checks, and errors thrown by an option's coerce, as a YError.
      if (!err || err.name === 'YError') throw new UsageError(err?.message ?? msg);
      throw err;
    })
    .parseAsync();
}

main().catch((err: unknown) => {
  if (isUserError(err)) {
    console.error(`bottleneck: ${err.message}`);
    process.exit(err.exitCode);
  }
  console.error(err);
  process.exit(1);
});
